"""Fixtures for test folders that read English pages: `from tests.english import *` in their
conftest.py makes services and clients speak English there."""
from __future__ import annotations

import pytest

__all__ = ["english", "support_client", "admin_client", "billing_client"]


@pytest.fixture(autouse=True)
def english(app, monkeypatch):
    """These tests read English words: services outside a request speak English here."""
    from flask import g

    monkeypatch.setitem(app.config, "BABEL_DEFAULT_LOCALE", "en")
    g.pop("_flask_babel", None)
    yield
    g.pop("_flask_babel", None)


@pytest.fixture
def support_client(app, make_user, login):
    """A client logged in as support, in English."""
    return login(app.test_client(), make_user("support", language="en"))


@pytest.fixture
def admin_client(app, make_user, login):
    """A client logged in as an admin, in English."""
    return login(app.test_client(), make_user("admin", language="en"))


@pytest.fixture
def billing_client(app, make_user, login):
    """A client logged in as billing, in English."""
    return login(app.test_client(), make_user("billing", language="en"))
