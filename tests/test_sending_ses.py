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


@pytest.mark.parametrize("command", ["send", "worker"])
def test_a_send_reads_the_account_once_on_the_apps_own_client(
    runner, weekly, ses_app_config, db_session, monkeypatch, command
):
    import botocore.session

    built = []
    real_client = botocore.session.Session.create_client

    def counting_client(self, *args, **kwargs):
        # SES clients come from one botocore session (newsletter.mail._aws_session).
        built.append(args[0] if args else kwargs["service_name"])
        return real_client(self, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting_client)
    if command == "send":
        result = runner("send", ISSUE_FILE, "--list", "weekly", "--yes")
    else:
        queued = runner("send", ISSUE_FILE, "--list", "weekly", "--yes", "--queue-only")
        assert queued.exit_code == 0, queued.output
        assert ses_app_config.account_reads == 0  # queued only: the worker reads the quota
        result = runner("worker", "--once")
    assert result.exit_code == 0, result.output
    assert len(ses_app_config.accepted) == 3
    # The app's SES client reads the quota and sends: no second client, one GetAccount.
    assert built == []
    assert ses_app_config.account_reads == 1
    db_session.commit()


@pytest.mark.parametrize(
    ("worker_config", "concurrency", "reused"),
    [
        ({}, 256, True),  # the defaults: the app's client has a connection per thread
        ({}, 8, True),
        ({}, 257, False),  # more threads than the app's client has connections for
        ({"SES_TIMEOUT": 30.0}, 64, False),  # the app's mailer was built with 15 s
        ({"SES_ENDPOINT_URL": "http://127.0.0.1:2"}, 64, False),
        ({"SES_CONFIGURATION_SET": "other"}, 64, False),
    ],
)
def test_a_worker_builds_its_own_client_only_when_the_apps_does_not_fit(
    monkeypatch, worker_config, concurrency, reused
):
    from newsletter.mail import SesMailer
    from newsletter.mail import make_mailer
    from newsletter.sending import worker_mailer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = {
        "MAIL_BACKEND": "ses",
        "SES_REGION": "eu-west-1",
        "SES_ENDPOINT_URL": "http://127.0.0.1:1",
        "SES_CONFIGURATION_SET": "newsletter",
    }
    mailer = make_mailer(config)
    chosen = worker_mailer(mailer, {**config, **worker_config}, concurrency)
    assert (chosen is mailer) is reused
    assert isinstance(chosen, SesMailer)
    assert chosen.client.meta.config.max_pool_connections >= concurrency
    # A client handed in (tests, stubs) is never reused: the worker builds its own, as ever.
    given = SesMailer(client=mailer.client)
    assert worker_mailer(given, config, concurrency) is not given


def test_the_apps_ses_client_waits_as_long_as_the_setting_says(monkeypatch):
    # The confirmation emails and `newsletter send` use the app's client: it read 15 s
    # whatever NEWSLETTER_SES_TIMEOUT said.
    from newsletter.mail import make_mailer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mailer = make_mailer({"MAIL_BACKEND": "ses", "SES_REGION": "eu-west-1", "SES_TIMEOUT": 2.5})
    assert mailer.client.meta.config.read_timeout == 2.5
    assert mailer.client.meta.config.connect_timeout == 2.5
