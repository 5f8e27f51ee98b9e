"""Logging: one set-up for web, CLI and workers; timestamps, levels, worker and issue ids."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from newsletter import logs
from newsletter.mail import MemoryMailer
from newsletter.pacing import PaceSettings
from newsletter.sending import DeliveryWorker
from newsletter.sending import WorkerSettings

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) (?P<logger>\S+)"
    r"(?: \[(?P<context>[^\]]*)\])?: (?P<message>.*)$"
)


@pytest.fixture(autouse=True)
def _logging_restored(restore_logging: None) -> None:
    """Every test here reconfigures logging; put it back afterwards."""


def test_text_lines_carry_time_level_logger_and_the_bound_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(level="info", fmt="text", environ={})
    log = logging.getLogger("newsletter.test")
    log.debug("not shown at info")
    log.info("outside any worker")
    with logs.context(worker_id="w-1"), logs.context(issue_id=7):
        log.warning("inside")
    log.error("explicit", extra={"issue_id": 3})
    lines = capsys.readouterr().err.splitlines()
    parsed = [TEXT_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m["level"], m["logger"], m["context"], m["message"]) for m in parsed] == [
        ("INFO", "newsletter.test", None, "outside any worker"),
        ("WARNING", "newsletter.test", "worker=w-1 issue=7", "inside"),
        ("ERROR", "newsletter.test", "issue=3", "explicit"),
    ]


def test_json_lines_for_log_shippers(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(environ={"NEWSLETTER_LOG_FORMAT": "json", "NEWSLETTER_LOG_LEVEL": "debug"})
    log = logging.getLogger("newsletter.test")
    with logs.context(worker_id="w-2", issue_id=9):
        log.debug("claimed %d", 5)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["level"] == "DEBUG" and first["logger"] == "newsletter.test"
    assert (first["message"], first["worker_id"], first["issue_id"]) == ("claimed 5", "w-2", 9)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", first["time"])
    assert "context" not in first
    assert "worker_id" not in second and "ValueError: boom" in second["exc_info"]


def test_configure_twice_keeps_one_handler_and_others_handlers() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    logs.configure(environ={})
    logs.configure(environ={})
    ours = [h for h in root.handlers if isinstance(h, logs.StderrHandler)]
    assert len(ours) == 1 and foreign in root.handlers


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NEWSLETTER_LOG_FORMAT": "xml"}, "NEWSLETTER_LOG_FORMAT must be 'text' or 'json'"),
        ({"NEWSLETTER_LOG_LEVEL": "loud"}, "NEWSLETTER_LOG_LEVEL must be one of debug"),
    ],
)
def test_bad_settings_are_one_clear_line(
    runner: Any, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], message: str
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = runner("lists")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_log_level_option(runner: Any) -> None:
    assert runner("--log-level", "warning", "lists").exit_code == 0
    assert logging.getLogger().level == logging.WARNING
    bad = runner("--log-level", "loud", "lists")
    assert bad.exit_code == 2 and "'loud' is not one of" in bad.output


class _FailingMailer(MemoryMailer):
    """Logs from the sending thread, then fails: the issue pauses (logged with its ids)."""

    def send(self, message: Any) -> str:
        logging.getLogger("newsletter.mail").warning("about to fail")
        raise RuntimeError("unexpected")


def _failing_worker(app: Any) -> DeliveryWorker:
    """A worker whose every call fails, and whose first failure pauses the issue."""
    return DeliveryWorker(
        app.extensions["newsletter.db"],
        _FailingMailer(),
        app.config,
        PaceSettings(max_rate=None, quota=None),
        settings=WorkerSettings(concurrency=2, batch_size=5, lease=30, max_consecutive_errors=1),
    )


def test_worker_records_carry_the_worker_and_issue_ids(
    app: Any, start_issue: Any, caplog: Any
) -> None:
    issue = start_issue(readers=1)
    logs.configure(environ={})  # as `newsletter worker` does
    worker = _failing_worker(app)
    with caplog.at_level(logging.INFO):
        worker.run(until_idle=True)
    thread = [r for r in caplog.records if r.getMessage() == "about to fail"]
    failed = [r for r in caplog.records if r.getMessage().startswith("issue paused")]
    assert thread and failed
    for record in thread + failed:
        assert (record.worker_id, record.issue_id) == (worker.id, issue.id)


def test_no_progress_bar_when_output_is_not_a_terminal(start_issue: Any, runner: Any) -> None:
    start_issue(readers=3)
    result = runner("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "Sent 3, failed 0" in result.output
    assert "\r" not in result.output and "msg/s" not in result.output


def test_a_pause_is_said_once_when_its_round_is_written_again(
    app: Any, start_issue: Any, caplog: Any, monkeypatch: Any
) -> None:
    # The round that pauses the issue fails to commit (the database went away) and is
    # written again: "issue paused" is logged, and counted, for the round that committed.
    import sqlalchemy.exc

    issue = start_issue(readers=1)
    check = DeliveryWorker._check_and_mark
    failed_rounds = []

    def flaky(self: Any, session: Any, due: Any) -> Any:
        if self._paused and not failed_rounds:
            failed_rounds.append(1)
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("connection lost"))
        return check(self, session, due)

    monkeypatch.setattr(DeliveryWorker, "_check_and_mark", flaky)
    worker = _failing_worker(app)
    with caplog.at_level(logging.INFO):
        progress = worker.run(until_idle=True)
    assert failed_rounds == [1]
    said = [r for r in caplog.records if r.getMessage().startswith("issue paused")]
    assert len(said) == 1 and said[0].issue_id == issue.id
    assert list(progress.paused) == [issue.id]
