"""WSGI entry point in a checkout: `gunicorn wsgi:app` (installed: `newsletter.wsgi:app`)."""

from __future__ import annotations

from newsletter.wsgi import app

__all__ = ["app"]
