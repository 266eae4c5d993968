"""Fixtures of the templates area: staff who read the dashboard in English (assertions)."""
import pytest


@pytest.fixture
def admin(make_user):
    """An admin whose dashboard speaks English."""
    return make_user("admin", language="en")
