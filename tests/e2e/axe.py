"""axe-core in the browser tests: inject the vendored copy, run it, name what it finds.

axe-core (MPL-2.0, https://github.com/dequelabs/axe-core) is vendored from the npm registry
(`npm pack axe-core`) into vendor/axe-core with its licence; VERSION says which release. The
dashboard's Content-Security-Policy forbids inline scripts, so pages scanned by axe are opened
in a browser context made with `bypass_csp=True` (see `open_context`).
"""
from __future__ import annotations

from pathlib import Path

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"

_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " → " + (n.failureSummary || "")),
  }));
}"""

_OVERFLOW = """() => ({
  scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
  wide: Array.from(document.querySelectorAll("body *"))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                 && getComputedStyle(e).position !== "fixed"
                 // inside a scrolling box only what escapes it (positioned outside it)
                 && (!e.closest(".table-scroll") || getComputedStyle(e).position === "absolute"))
    .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
                          + (e.className && typeof e.className === "string" ? "." + e.className.trim().replace(/\\s+/g, ".") : "")),
})"""


def open_context(browser, browser_context_args: dict, width: int = 1280, **extra):
    """A browser context that lets the vendored axe-core in (the app's CSP refuses inline
    scripts), with the suite's short timeouts."""
    from .conftest import ACTION_TIMEOUT_MS, NAVIGATION_TIMEOUT_MS

    context = browser.new_context(**{**browser_context_args, "bypass_csp": True,
                                     "viewport": {"width": width, "height": 844}, **extra})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    return context


def violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now (every rule axe runs by default)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(_RUN)


def describe(found: list[dict]) -> str:
    """Violations in lines a failing assertion can show."""
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"])
                     for v in found)


def assert_accessible(page, where: str = "") -> None:
    """No axe-core violation on the page as it is now."""
    found = violations(page)
    assert not found, f"axe-core on {where or page.url}:\n{describe(found)}"


def overflow(page) -> dict:
    """How wide the page is against the window, and the first elements that stick out."""
    return page.evaluate(_OVERFLOW)


def assert_fits(page, where: str = "") -> None:
    """No horizontal page overflow: nothing makes the page wider than the window."""
    found = overflow(page)
    assert found["scroll"] <= found["inner"], (
        f"{where or page.url} is {found['scroll']} px wide in a {found['inner']} px window; "
        f"sticking out: {found['wide']}")


def assert_in_view(locator) -> None:
    """The element is shown inside the window horizontally, so a tap reaches it."""
    box = locator.bounding_box()
    width = locator.page.evaluate("window.innerWidth")
    assert box is not None, f"{locator} is not displayed"
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (
        f"{locator} spans x={box['x']:.0f}…{box['x'] + box['width']:.0f} in a {width} px window")
