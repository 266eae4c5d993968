"""`flask demo`: the whole product in one process on demo data (filled in below)."""
from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    """Register `flask demo`."""
