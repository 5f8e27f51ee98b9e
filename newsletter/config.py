"""Configuration: documented defaults, NEWSLETTER_* environment variables, start-up checks."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields
from pathlib import Path
from typing import Any
from typing import get_type_hints

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout (an editable install runs from it); in an installed wheel, site-packages.
PROJECT_ROOT = PACKAGE_DIR.parent
# Where the wheel carries the checkout's top-level templates/, static/ and migrations/
# (setup.py copies them there at build time).
PACKAGED_DATA = PACKAGE_DIR / "package_data"


def data_dir(name: str) -> Path:
    """Return the templates, static or migrations folder: the wheel's, else the checkout's."""
    packaged = PACKAGED_DATA / name
    return packaged if packaged.is_dir() else PROJECT_ROOT / name


def default_instance_path() -> Path:
    """Return where the SQLite file and outbox go by default.

    A checkout keeps them in its own instance/ folder; an installed package, which must
    not write into site-packages, in instance/ under the working directory.
    """
    if PACKAGED_DATA.is_dir():
        return Path.cwd() / "instance"
    return PROJECT_ROOT / "instance"


# Every setting the application reads, with its default. Deployment values come from
# NEWSLETTER_<NAME> environment variables (see README "Configuration").
@dataclass(frozen=True)
class Settings:
    """Every setting, typed, with its default: the one place defaults are written.

    Deployments set them with NEWSLETTER_<NAME> environment variables (README,
    "Configuration"); load_config reads them once at start-up. The app keeps the result
    both as Flask's config (string keys) and as this frozen object
    (`app.extensions["newsletter.settings"]`, or settings_of(config)).
    """

    # "production" or "development"; tests pass TESTING=True instead.
    env: str = "production"
    # SQLAlchemy URL; None means a SQLite file under the instance folder.
    database_url: str | None = None
    # Signs tokens and session cookies. Required in production.
    secret_key: str | None = None
    # Public URL used in every link in emails. Required in production.
    base_url: str | None = None
    # "outbox" (.eml files) or "ses".
    mail_backend: str = "outbox"
    # Where the outbox backend writes; None means instance/outbox.
    outbox_dir: str | None = None
    ses_region: str | None = None
    ses_endpoint_url: str | None = None
    ses_configuration_set: str | None = None
    # How SendEmail reaches SES: "direct" (one signed HTTP request on the boto3 client's
    # connection pool, a third of boto3's CPU per call) or "boto3" (client.send_email).
    ses_transport: str = "direct"
    # Messages per second across all workers; None reads the SES account quota.
    send_rate: float | None = None
    # The most sends in flight at once per worker process (threads; SES latency hides
    # behind them); a worker keeps as many as its rate needs at the latency it measures.
    # 256 lets one worker reach 1,000/s at 160 ms (Little's law with its headroom), the
    # latency of a host far from its SES region; threads not needed are never started.
    send_concurrency: int = 256
    # A worker silent for this many seconds is taken for dead: its in-flight rows
    # become "unknown" (on the same machine a vanished process is noticed at once).
    worker_lease: int = 30
    # This many errors in a row pause the send (a cause common to all, not the readers).
    send_max_consecutive_errors: int = 10
    # Seconds to wait for SES to answer one call before retrying it later.
    ses_timeout: float = 15.0
    # Comma-separated SNS topic ARNs whose notifications are accepted.
    sns_topic_arns: str = ""
    # With a domain set, List-Unsubscribe also offers mailto:u+TOKEN@DOMAIN; mail to it
    # (SES receiving -> the SNS topic above) unsubscribes. See docs/bounces.md.
    unsubscribe_mailto_domain: str | None = None
    # Reject SNS messages whose signed Timestamp is older than this many seconds (0: no
    # limit). Replays are harmless anyway (deduplicated by MessageId); see docs/bounces.md.
    sns_max_age: int = 0
    # Confirmation links expire after this many seconds (7 days).
    confirm_max_age: int = 7 * 24 * 3600
    # At most this many confirmation emails per address per 24 hours.
    confirm_emails_per_day: int = 3
    # Signup form posts allowed per client IP per window.
    signup_ip_limit: int = 30
    signup_ip_window: int = 600
    # Signup form posts allowed per address per window (beyond this: same page, nothing done).
    signup_address_limit: int = 10
    signup_address_window: int = 3600
    # email-validator DNS deliverability checks (off: no network at signup).
    check_deliverability: bool = False
    # Largest request body accepted, in bytes (uploads of CSV files are larger: see admin).
    max_content_length: int = 16 * 1024 * 1024
    # Trust this many reverse proxies for X-Forwarded-For (0: use the socket address).
    proxy_count: int = 0
    # Hard bounces suppress at once; this many transient ones within the window do too.
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 15
    # Console login attempts allowed per client IP, and per account, per window (seconds).
    login_ip_limit: int = 20
    login_account_limit: int = 10
    login_window: int = 900
    # Largest CSV file the console's import page accepts, in bytes.
    import_max_bytes: int = 512 * 1024 * 1024
    # Bearer token for GET /metrics (Prometheus); unset, /metrics answers 404.
    metrics_token: str | None = None
    # `newsletter db prune` (and workers, daily) delete rows older than these, in days:
    # rate-limit counters, SNS dedupe rows, console drafts, staged CSV uploads.
    rate_limit_retention_days: int = 2
    sns_dedupe_retention_days: int = 30
    draft_retention_days: int = 30
    upload_retention_days: int = 1
    # Logging (newsletter.logs reads these before the app exists): the least severe level
    # written, and "text" or "json".
    log_level: str = "info"
    log_format: str = "text"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Return the typed view of a config mapping (missing keys take their defaults)."""
        return cls(**{f.name: config.get(f.name.upper(), f.default) for f in fields(cls)})


# The defaults by NEWSLETTER_ name (without the prefix), as Flask's config holds them.
DEFAULTS: dict[str, Any] = {f.name.upper(): f.default for f in fields(Settings)}

# Settings that have no default in production: start-up fails naming the variable.
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "BASE_URL")

DEVELOPMENT_SECRET_KEY = "dev-only-secret-key-do-not-use-in-production"
DEVELOPMENT_BASE_URL = "http://127.0.0.1:5000"
# The most calls in flight one worker may keep (NEWSLETTER_SEND_CONCURRENCY, --concurrency):
# one thread and one connection each.
MAX_SEND_CONCURRENCY = 1024

RETENTION_KEYS = (
    "RATE_LIMIT_RETENTION_DAYS",
    "SNS_DEDUPE_RETENTION_DAYS",
    "DRAFT_RETENTION_DAYS",
    "UPLOAD_RETENTION_DAYS",
)

# How each NEWSLETTER_ variable is read, from the field types of Settings.
_TYPES = {name.upper(): hint for name, hint in get_type_hints(Settings).items()}
_INT_KEYS = {key for key, hint in _TYPES.items() if hint is int}
_FLOAT_KEYS = {key for key, hint in _TYPES.items() if hint in (float, float | None)}
_BOOL_KEYS = {key for key, hint in _TYPES.items() if hint is bool}


_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _parse(key: str, raw: str) -> Any:
    name = f"NEWSLETTER_{key}"
    if key in _INT_KEYS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if key in _FLOAT_KEYS:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value <= 0:
            raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
        return value
    if key in _BOOL_KEYS:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw


def load_config(
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    instance_path: Path | None = None,
) -> dict[str, Any]:
    """Return the settings: defaults, then NEWSLETTER_* variables, then overrides."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for key in DEFAULTS:
        raw = environ.get(f"NEWSLETTER_{key}")
        if raw is not None and raw != "":
            config[key] = _parse(key, raw)
    config.update(overrides or {})

    if config["ENV"] not in {"production", "development"}:
        raise ConfigError(
            f"NEWSLETTER_ENV must be 'production' or 'development', got {config['ENV']!r}"
        )
    if config["MAIL_BACKEND"] not in {"outbox", "ses", "memory"}:
        raise ConfigError(
            f"NEWSLETTER_MAIL_BACKEND must be 'outbox' or 'ses', got {config['MAIL_BACKEND']!r}"
        )
    if config["SES_TRANSPORT"] not in {"direct", "boto3"}:
        raise ConfigError(
            f"NEWSLETTER_SES_TRANSPORT must be 'direct' or 'boto3', got {config['SES_TRANSPORT']!r}"
        )
    if not 1 <= config["SEND_CONCURRENCY"] <= MAX_SEND_CONCURRENCY:
        raise ConfigError(
            f"NEWSLETTER_SEND_CONCURRENCY must be between 1 and {MAX_SEND_CONCURRENCY} "
            f"(calls in flight per worker), got {config['SEND_CONCURRENCY']}"
        )
    relaxed = config["ENV"] == "development" or config.get("TESTING")
    if relaxed:
        config["SECRET_KEY"] = config["SECRET_KEY"] or DEVELOPMENT_SECRET_KEY
        config["BASE_URL"] = config["BASE_URL"] or DEVELOPMENT_BASE_URL
    for key in REQUIRED_IN_PRODUCTION:
        if not config[key]:
            raise ConfigError(
                f"NEWSLETTER_{key} is not set (required when NEWSLETTER_ENV=production)"
            )
    config["BASE_URL"] = config["BASE_URL"].rstrip("/")
    for key in RETENTION_KEYS:
        if config[key] < 1:
            raise ConfigError(f"NEWSLETTER_{key} must be at least 1 (days), got {config[key]}")
    longest = max(config[k] for k in ("SIGNUP_IP_WINDOW", "SIGNUP_ADDRESS_WINDOW", "LOGIN_WINDOW"))
    if config["RATE_LIMIT_RETENTION_DAYS"] * 86400 < longest:
        raise ConfigError(
            "NEWSLETTER_RATE_LIMIT_RETENTION_DAYS must cover the longest rate-limit window "
            f"({longest} seconds)"
        )
    mailto_domain = (config.get("UNSUBSCRIBE_MAILTO_DOMAIN") or "").strip().lower() or None
    if mailto_domain is not None and not _DOMAIN.match(mailto_domain):
        raise ConfigError(
            "NEWSLETTER_UNSUBSCRIBE_MAILTO_DOMAIN must be a domain name in ASCII (punycode), "
            f"like unsubscribe.news.example.com, got {mailto_domain!r}"
        )
    config["UNSUBSCRIBE_MAILTO_DOMAIN"] = mailto_domain

    instance = instance_path or default_instance_path()
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{instance / 'newsletter.db'}"
    if not config["OUTBOX_DIR"]:
        config["OUTBOX_DIR"] = str(instance / "outbox")
    if isinstance(config["SNS_TOPIC_ARNS"], str):
        config["SNS_TOPIC_ARNS"] = tuple(
            arn.strip() for arn in config["SNS_TOPIC_ARNS"].split(",") if arn.strip()
        )
    return config


def settings_of(config: Mapping[str, Any]) -> Settings:
    """Return the frozen, typed settings of an app's config (or of any config mapping)."""
    return Settings.from_config(config)
