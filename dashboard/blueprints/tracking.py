"""Open tracking pixel."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("tracking", __name__)
