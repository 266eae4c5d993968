"""Steps shared by the browser tests."""
from __future__ import annotations

from ..conftest import PASSWORD


def log_in(page, base: str, email: str, password: str = PASSWORD) -> None:
    """Log in through the real form and wait for Home."""
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
