"""`newsletter send`, `worker`, `status` as editors type them."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import clock
from newsletter.models import Delivery
from newsletter.models import Issue
from newsletter.models import IssueStatus

ISSUE_FILE = str(Path(__file__).parent / "data" / "sending-issue.yaml")


@pytest.fixture
def weekly(make_list, make_subscriber):
    mailing_list = make_list()
    for _ in range(3):
        make_subscriber(mailing_list)
    return mailing_list


def _issue_count(db_session):
    count = db_session.scalar(sa.select(sa.func.count()).select_from(Issue))
    deliveries = db_session.scalar(sa.select(sa.func.count()).select_from(Delivery))
    db_session.commit()
    return count, deliveries


def test_dry_run_counts_and_sends_nothing(runner, weekly, outbox, db_session):
    result = runner("send", ISSUE_FILE, "--list", "weekly", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "3 readers" in result.output and "Dry run" in result.output
    assert outbox.messages == []
    assert _issue_count(db_session) == (0, 0)


def test_test_copies_are_marked_and_not_in_the_ledger(runner, weekly, outbox, db_session):
    result = runner("send", ISSUE_FILE, "--list", "weekly", "--test-to", "Editor@Example.org")
    assert result.exit_code == 0, result.output
    assert [m.recipient for m in outbox.messages] == ["Editor@example.org"]
    parsed = email.message_from_bytes(outbox.messages[0].as_bytes(), policy=email.policy.default)
    assert parsed["Subject"].startswith("[TEST] o11y news #42")
    assert parsed["List-Unsubscribe"].startswith("<https://")
    assert _issue_count(db_session) == (0, 0)


def test_confirmation_is_asked_and_no_means_nothing_sent(runner, weekly, outbox, db_session):
    result = runner("send", ISSUE_FILE, "--list", "weekly", input="n\n")
    assert result.exit_code == 1
    assert "Send now to 3 readers?" in result.output
    assert outbox.messages == []
    assert _issue_count(db_session) == (0, 0)


def test_send_after_yes_delivers_and_reports(runner, weekly, outbox):
    result = runner("send", ISSUE_FILE, "--list", "weekly", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Sent 3, failed 0" in result.output
    assert len(outbox.messages) == 3


def test_scheduled_send_waits_for_its_time(runner, weekly, outbox, db_session):
    result = runner(
        "send", ISSUE_FILE, "--list", "weekly", "--at", "2099-01-01T09:00+01:00", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert "Scheduled for 2099-01-01T08:00:00+00:00" in result.output
    assert runner("worker", "--once").exit_code == 0
    assert outbox.messages == []
    issue = db_session.scalar(sa.select(Issue))
    issue.scheduled_at = clock.now()  # the time has come
    db_session.commit()
    result = runner("worker", "--once")
    assert result.exit_code == 0, result.output
    assert len(outbox.messages) == 3
    db_session.refresh(issue)
    assert issue.status is IssueStatus.SENT
    db_session.commit()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", ISSUE_FILE, "--list", "nope", "--yes"], "There is no list 'nope'"),
        (["send", "missing.yaml", "--list", "weekly", "--yes"], "missing.yaml"),
        (["send", ISSUE_FILE, "--yes"], "Give the issue FILE and --list SLUG"),
        (["send", ISSUE_FILE, "--list", "weekly", "--at", "tomorrow"], "not a date and time"),
        (["send", ISSUE_FILE, "--list", "weekly", "--at", "2001-01-01T00:00"], "in the past"),
        (["send", ISSUE_FILE, "--list", "weekly", "--test-to", "not-an-address"], "--test-to"),
        (["send", "--retry-unknown", "999"], "There is no issue '999'"),
        (["send", "--resume", "999"], "There is no issue '999'"),
        (["status", "999"], "There is no issue '999'"),
    ],
)
def test_bad_input_is_one_clear_line(runner, weekly, outbox, args, message):
    result = runner(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert outbox.messages == []


def test_bad_issue_file_names_the_problem(runner, weekly, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\ndate: 2026-01-01\nsections: []\nsurprise: 1\n")
    result = runner("send", str(bad), "--list", "weekly", "--yes")
    assert result.exit_code == 1
    assert "bad.yaml" in result.output and "surprise" in result.output


def test_status_lists_recent_sends(runner, weekly, outbox):
    assert runner("status").output.strip() == "No issues sent yet."
    assert runner("send", ISSUE_FILE, "--list", "weekly", "--yes").exit_code == 0
    result = runner("status")
    assert result.exit_code == 0
    assert "unlocking-the-kernel\tweekly\tsent\tsent 3/3\tfailed 0\tunknown 0" in result.output


def test_sent_issue_is_refused_before_asking(runner, weekly, outbox):
    assert runner("send", ISSUE_FILE, "--list", "weekly", "--yes").exit_code == 0
    result = runner("send", ISSUE_FILE, "--list", "weekly")
    assert result.exit_code == 1
    assert "already sent" in result.output and "?" not in result.output
    assert len(outbox.messages) == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_send_while_a_worker_runs_leaves_it_to_that_worker(
    runner, weekly, outbox, db_session
):
    from newsletter.models import Worker
    from newsletter.models import WorkerStatus

    # A live worker on another machine, heart-beating now.
    db_session.add(
        Worker(id="busy", hostname="elsewhere", pid=1, concurrency=8, status=WorkerStatus.RUNNING)
    )
    db_session.commit()
    result = runner("send", ISSUE_FILE, "--list", "weekly", "--yes")
    assert result.exit_code == 0, result.output
    assert "Another worker is running" in result.output
    assert "The send is queued" in result.output
    assert outbox.messages == []
    assert _issue_count(db_session) == (1, 3)


def test_a_list_without_readers_is_refused(runner, make_list, outbox, db_session):
    make_list(slug="empty")
    result = runner("send", ISSUE_FILE, "--list", "empty", "--yes")
    assert result.exit_code == 1
    assert "has no active readers" in result.output
    assert _issue_count(db_session) == (0, 0)
