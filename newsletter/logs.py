"""Logging for the web app, the CLI and the workers: one dictConfig set-up.

Every record carries a UTC timestamp, its level and logger, and the worker and issue it
belongs to when there is one: code binds them with `context(worker_id=..., issue_id=...)`
(contextvars, so threads and requests never mix them up) and ContextFilter copies them
onto each record. NEWSLETTER_LOG_FORMAT=json writes one JSON object a line for log
shippers (python-json-logger); NEWSLETTER_LOG_LEVEL or `--log-level` sets the level.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import time
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from contextvars import Token
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from newsletter.config import DEFAULTS
from newsletter.config import ConfigError

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")

WORKER_ID: ContextVar[str | None] = ContextVar("newsletter_worker_id", default=None)
ISSUE_ID: ContextVar[int | None] = ContextVar("newsletter_issue_id", default=None)
_CONTEXT = (("worker_id", "worker", WORKER_ID), ("issue_id", "issue", ISSUE_ID))

# Third-party loggers that are chatty at INFO (every HTTP connection, every credential
# lookup): warnings only, whatever the level.
QUIET = ("botocore", "boto3", "urllib3", "s3transfer")

_UNSET: Any = object()


class ContextFilter(logging.Filter):
    """Copy the bound worker and issue ids onto each record (an explicit `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = []
        for attribute, label, variable in _CONTEXT:
            value = getattr(record, attribute, None)
            if value is None:
                value = variable.get()
                if value is not None:
                    setattr(record, attribute, value)
            if value is not None:
                shown.append(f"{label}={value}")
        record.context = f" [{' '.join(shown)}]" if shown else ""
        return True


@contextmanager
def context(*, worker_id: Any = _UNSET, issue_id: Any = _UNSET) -> Iterator[None]:
    """Bind a worker id and/or issue id to the records logged inside the block."""
    tokens: list[tuple[ContextVar[Any], Token[Any]]] = []
    if worker_id is not _UNSET:
        tokens.append((WORKER_ID, WORKER_ID.set(worker_id)))
    if issue_id is not _UNSET:
        tokens.append((ISSUE_ID, ISSUE_ID.set(issue_id)))
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def bind(*, worker_id: str | None = None, issue_id: int | None = None) -> None:
    """Bind ids for the rest of this thread (a thread pool's initializer: threads start
    with an empty context, so a worker's sending threads would otherwise log no id)."""
    WORKER_ID.set(worker_id)
    ISSUE_ID.set(issue_id)


class TextFormatter(logging.Formatter):
    """`2026-12-04T16:20:00.123Z INFO newsletter.x [worker=w issue=3]: message`."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, message, worker_id/issue_id, extras."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "context"],
        json_ensure_ascii=False,
    )


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Write to whatever sys.stderr is when a record is emitted.

    Resolved at each record, not once: the CLI's test runner and daemon managers swap
    sys.stderr, and a handler holding the old stream would write into a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def settings(
    level: str | None = None,
    fmt: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the dictConfig for a level and format (defaults: NEWSLETTER_LOG_*, info, text)."""
    environ = os.environ if environ is None else environ
    level = (level or environ.get("NEWSLETTER_LOG_LEVEL") or DEFAULTS["LOG_LEVEL"]).strip().lower()
    fmt = (fmt or environ.get("NEWSLETTER_LOG_FORMAT") or DEFAULTS["LOG_FORMAT"]).strip().lower()
    if level not in LEVELS:
        raise ConfigError(f"NEWSLETTER_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ConfigError(f"NEWSLETTER_LOG_FORMAT must be 'text' or 'json', got {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {
            "text": {"()": TextFormatter},
            "json": {"()": json_formatter},
        },
        "handlers": {
            "stderr": {"()": StderrHandler, "filters": ["context"], "formatter": fmt},
        },
        "loggers": {name: {"level": "WARNING"} for name in QUIET},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure(
    level: str | None = None,
    fmt: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Set up logging for this process (web, CLI or worker); calling it again replaces it.

    Handlers that someone else put on the root logger (a test's log capture, a process
    manager's) are kept; ours is replaced, never doubled.
    """
    config = settings(level, fmt, environ)
    root = logging.getLogger()
    kept = [handler for handler in root.handlers if not isinstance(handler, StderrHandler)]
    logging.config.dictConfig(config)
    context_filter = next(
        (f for h in root.handlers for f in h.filters if isinstance(f, ContextFilter)), None
    )
    for handler in kept:
        if context_filter is not None and context_filter not in handler.filters:
            handler.addFilter(context_filter)
        root.addHandler(handler)
