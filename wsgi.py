"""WSGI entry point: `gunicorn wsgi:app`, and how `flask` finds the app from the repo root."""
from dashboard import create_app

app = create_app()
