"""WSGI entry point of an installed package: `gunicorn newsletter.wsgi:app`."""

from __future__ import annotations

import sys

from newsletter import create_app
from newsletter import logs
from newsletter.config import ConfigError

try:
    logs.configure()
    app = create_app()
except ConfigError as exc:  # one clear line instead of a traceback
    sys.exit(f"newsletter: {exc}")
