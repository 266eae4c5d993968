"""Benchmark: rendering notifications (the function sending, preview and resend share).

Prints, per default template, the time of one full render (subject + HTML with the shared
layout + CSS inlining + plain text derived by inscriptis), the static check the editor runs on
every keystroke, the watchdog's own overhead on a trivial template, and how long a runaway
loop takes to be stopped.

    python bench/render.py [--rounds 200]

No database is needed: rendering is pure.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.notifications import CATALOG, LANGUAGES, default_source, known_variables  # noqa: E402
from dashboard.services.content import render  # noqa: E402


def timed(fn, rounds: int) -> list[float]:
    """Milliseconds of each of `rounds` calls."""
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def line(label: str, samples: list[float]) -> str:
    """p50 / p95 / max of samples in ms."""
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    return f"{label:<32} p50 {statistics.median(samples):7.2f} ms  p95 {p95:7.2f} ms  " \
           f"max {samples[-1]:7.2f} ms"


def main() -> None:
    """Run every measurement and print one line each."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    everything = []
    for event in CATALOG:
        for language in LANGUAGES:
            source, sample = default_source(event, language), CATALOG[event]["sample"]
            render.render_source(source, sample)  # compile once, like a warm worker
            samples = timed(lambda s=source, d=sample: render.render_source(s, d), rounds)
            everything += samples
            print(line(f"render {event}/{language}", samples))
    print(line("render, all defaults", everything))
    print(f"{'throughput, one thread':<32} {1000 / statistics.mean(everything):7.0f} renders/s")
    source = default_source("order_closed", "it")
    print(line("editor static check", timed(
        lambda: render.check_source(source, known_variables("order_closed")), rounds)))
    html = render.inline_css(render._render_part("html", source["html"],
                                                 {**CATALOG["order_closed"]["sample"],
                                                  "subject": "s"}, "html"))
    print(line("css inlining alone", timed(lambda: render.inline_css(html), rounds)))
    print(line("text derivation alone", timed(lambda: render.html_to_text(html), rounds)))
    trivial = render._compile("text", "{{ x }}")
    bare = timed(lambda: trivial.render(x=1), rounds * 5)
    guarded = timed(lambda: render._render_part("text", "{{ x }}", {"x": 1}, "subject"), rounds * 5)
    print(f"{'watchdog + budget overhead':<32} "
          f"{statistics.median(guarded) - statistics.median(bare):7.3f} ms per part")
    runaway = "{% set s = 'a' * 1000000 %}{% for i in s %}{% for j in s %}{% endfor %}{% endfor %}"
    started = time.perf_counter()
    try:
        render.render_source({"subject": "s", "html": runaway}, {})
    except render.RenderError as exc:
        print(f"{'runaway loop stopped after':<32} {time.perf_counter() - started:7.2f} s "
              f"(budget {render.MAX_RENDER_SECONDS:g} s): {exc.message}")


if __name__ == "__main__":
    main()
