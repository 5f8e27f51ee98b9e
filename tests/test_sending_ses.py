"""`newsletter send` with SES: rate and quota read from the account (GetAccount)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.models import Issue

ISSUE_FILE = str(Path(__file__).parent / "data" / "sending-issue.yaml")


@pytest.fixture
def weekly(make_list, make_subscriber):
    mailing_list = make_list()
    for _ in range(3):
        make_subscriber(mailing_list)
    return mailing_list


@pytest.fixture
def ses_app_config(app_config, monkeypatch):
    from sesfake import SesFake

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    fake = SesFake(quota={"Max24HourSend": 1000.0, "MaxSendRate": 20.0})
    fake.start()
    app_config.pop("MAILER")
    app_config.update(MAIL_BACKEND="ses", SES_ENDPOINT_URL=fake.url, SES_REGION="us-east-1")
    yield fake
    fake.stop()


@pytest.fixture
def app(ses_app_config, app_config):
    """The app with SES pointing at the tests' own SES server (GetAccount works there)."""
    from newsletter import create_app

    application = create_app(app_config)
    yield application
    application.extensions["newsletter.db"].dispose()


def test_rate_and_quota_come_from_the_ses_account(runner, weekly, ses_app_config, db_session):
    from newsletter.models import SendPace

    result = runner("send", ISSUE_FILE, "--list", "weekly", "--yes")
    assert result.exit_code == 0, result.output
    assert "Sending at up to 20/s" in result.output  # MaxSendRate itself
    assert len(ses_app_config.accepted) == 3
    pace = db_session.get(SendPace, "ses")
    assert pace.max_rate == 20.0 and pace.quota_max == 1000.0
    db_session.commit()


def test_without_a_rate_an_unreadable_quota_is_one_clear_line(
    runner, weekly, ses_app_config, db_session
):
    ses_app_config.account_broken = True
    result = runner("send", ISSUE_FILE, "--list", "weekly", "--yes")
    assert result.exit_code == 1
    assert "could not read the SES account quota" in result.output
    assert "Set NEWSLETTER_SEND_RATE" in result.output
    assert "Traceback" not in result.output
    assert ses_app_config.accepted == []
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Issue)) == 0
    db_session.commit()
