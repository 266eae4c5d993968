"""Browser tests: Playwright drives Debian's chromium against the live server.

Every test under tests/e2e is marked `e2e`, gets a hard time limit, and is skipped with a clear
reason when /usr/bin/chromium is not installed (`apt-get install -y chromium`).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HERE = Path(__file__).resolve().parent
TEST_TIMEOUT_SECONDS = 120  # a stuck browser fails the test instead of hanging the run
ACTION_TIMEOUT_MS = 15_000
NAVIGATION_TIMEOUT_MS = 30_000
NO_CHROMIUM = f"{CHROMIUM} is not installed (apt-get install -y chromium)"

expect.set_options(timeout=ACTION_TIMEOUT_MS)


def pytest_collection_modifyitems(config, items):
    """Mark every browser test `e2e`, give it a hard time limit, skip it without chromium."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_SECONDS))
            if not CHROMIUM.exists():  # before any fixture tries to launch it
                item.add_marker(pytest.mark.skip(reason=NO_CHROMIUM))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launch Debian's chromium headless, without the sandbox containers lack."""
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": CHROMIUM_ARGS,
        "timeout": 30_000,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """An English-speaking browser: pages default to English until a user picks Italian."""
    return {**browser_context_args, "locale": "en-US"}


@pytest.fixture
def context(context):
    """Short waits: a missing element fails in seconds, not after Playwright's 30 s default."""
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    return context
