"""gunicorn settings for the web app: `gunicorn -c python:newsletter.gunicorn_config`.

Serves newsletter.wsgi:app. With PROMETHEUS_MULTIPROC_DIR set in gunicorn's environment,
every worker process writes its metrics to that folder and /metrics adds them up
(prometheus_client's multi-process mode): the folder is emptied when gunicorn starts and
a worker that exits is marked dead, as prometheus_client documents. Command-line options
(--workers, --bind, ...) still apply.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

wsgi_app = "newsletter.wsgi:app"


def _metrics_dir() -> Path | None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(folder) if folder else None


def on_starting(server: Any) -> None:
    """Empty the metrics folder: values from a previous run must not be added again."""
    folder = _metrics_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Tell prometheus_client that a worker process is gone (its live gauges go with it)."""
    if _metrics_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
