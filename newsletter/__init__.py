"""The newsletter application: create_app() builds it; nothing happens at import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from newsletter.config import Settings
from newsletter.config import data_dir
from newsletter.config import default_instance_path
from newsletter.config import load_config

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None, *, web: bool = True) -> Flask:
    """Build the web application from NEWSLETTER_* variables, or a test dict.

    `web=False` leaves out the pages (blueprints, error pages): the command line's
    commands other than `serve` use only the configuration, database and mailer.
    """
    from flask import Flask  # here, not at import: `newsletter --help` needs no Flask

    overrides = dict(test_config or {})
    mailer = overrides.pop("MAILER", None)
    instance_path = Path(overrides.pop("INSTANCE_PATH", default_instance_path()))
    config = load_config(overrides, instance_path=instance_path)

    app = Flask(
        __name__,
        template_folder=str(data_dir("templates")),
        static_folder=str(data_dir("static")),
        instance_path=str(instance_path),
        instance_relative_config=False,
    )
    app.config.update(config)
    # The typed, frozen view of the same settings, built once (config.Settings).
    app.extensions["newsletter.settings"] = Settings.from_config(config)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = config["ENV"] == "production" and not config.get(
        "TESTING"
    )

    from newsletter import db
    from newsletter import i18n
    from newsletter import mail

    app.extensions["newsletter.db"] = db.Database(config["DATABASE_URL"])
    app.extensions["newsletter.mailer"] = mailer or mail.make_mailer(config)
    i18n.init_app(app)
    if web:
        from newsletter import web as pages

        pages.init_app(app)
    return app
