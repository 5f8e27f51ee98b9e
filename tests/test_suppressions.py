"""`newsletter suppressions` and the suppression core the subscribe flow relies on."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import boto3
import pytest
import sqlalchemy as sa
from botocore.stub import Stubber

from newsletter import create_app
from newsletter import suppressions
from newsletter.cli import CliState
from newsletter.cli import main as cli_main
from newsletter.mail import SesMailer
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason


def test_add_list_remove(runner, db_session):
    added = runner("suppressions", "add", " Jane@Example.COM ", "--note", "asked by phone")
    assert added.exit_code == 0, added.output
    assert "Suppressed jane@example.com (manual)" in added.output
    listed = runner("suppressions", "list")
    assert listed.stdout.splitlines()[0].split("\t")[::3] == ["jane@example.com", "asked by phone"]
    assert "manual" in listed.stdout
    removed = runner("suppressions", "remove", "jane@example.com")
    assert removed.exit_code == 0, removed.output
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    db_session.rollback()
    assert "No suppressed addresses." in runner("suppressions", "list").stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "not-an-address"), "not valid"),
        (("add", "a@b.com\r\nBcc: x@y.com"), "line breaks"),
        (("remove", "nobody@example.com"), "is not on the suppression list"),
        (("import-ses",), "needs NEWSLETTER_MAIL_BACKEND=ses"),
    ],
)
def test_bad_input_is_one_line(runner, args, message):
    result = runner("suppressions", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_remove_reactivates_bounced_but_not_complained(
    runner, db_session, make_list, make_subscriber
):
    weekly, monthly = make_list(), make_list(slug="monthly", name="Monthly")
    bounced = make_subscriber(weekly, email="jane@example.com", status=SubscriptionStatus.BOUNCED)
    complained = make_subscriber(
        monthly, email="jane@example.com", status=SubscriptionStatus.COMPLAINED
    )
    db_session.add(Suppression(email="jane@example.com", reason=SuppressionReason.HARD_BOUNCE))
    db_session.commit()
    result = runner("suppressions", "remove", "jane@example.com")
    assert result.exit_code == 0, result.output
    assert "1 bounced subscription(s) active again" in result.stdout
    assert "must sign up again" in result.stderr
    db_session.expire_all()
    assert db_session.get(Subscription, bounced.id).status is SubscriptionStatus.ACTIVE
    assert db_session.get(Subscription, complained.id).status is SubscriptionStatus.COMPLAINED


def test_complaint_is_lifted_only_by_a_confirmed_signup(db_session):
    suppressions.suppress(db_session, "jane@example.com", SuppressionReason.COMPLAINT, "abuse")
    suppressions.suppress(db_session, "gone@example.com", SuppressionReason.HARD_BOUNCE, None)
    # A fresh signup may send the confirmation link to a complainer, not to a bounced address.
    assert suppressions.may_send_confirmation(db_session, "Jane@example.com")
    assert not suppressions.may_send_confirmation(db_session, "gone@example.com")
    assert suppressions.may_send_confirmation(db_session, "new@example.com")
    assert not suppressions.lift_after_opt_in(db_session, "gone@example.com")
    assert suppressions.lift_after_opt_in(db_session, "jane@example.com")
    db_session.flush()
    assert not suppressions.is_suppressed(db_session, "jane@example.com")
    assert suppressions.is_suppressed(db_session, "GONE@example.com")


def test_a_complaint_outranks_an_earlier_bounce(db_session):
    suppressions.suppress(db_session, "jane@example.com", SuppressionReason.HARD_BOUNCE, None)
    suppressions.suppress(db_session, "jane@example.com", SuppressionReason.COMPLAINT, "abuse")
    suppressions.suppress(db_session, "jane@example.com", SuppressionReason.SOFT_BOUNCES, None)
    assert db_session.scalars(sa.select(Suppression.reason)).all() == [SuppressionReason.COMPLAINT]


@pytest.fixture
def stubbed_ses(app_config):
    """The app with an SES mailer whose sesv2 client is a botocore Stubber (moto lacks the call)."""
    client = boto3.client(
        "sesv2",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    config = dict(app_config, MAIL_BACKEND="ses", MAILER=SesMailer(client=client))
    app = create_app(config)
    with Stubber(client) as stubber:
        yield app, stubber
    app.extensions["newsletter.db"].dispose()


def _summary(email: str, reason: str) -> dict:
    return {
        "EmailAddress": email,
        "Reason": reason,
        "LastUpdateTime": datetime(2026, 1, 5, tzinfo=UTC),
    }


def test_import_ses_reads_every_page(stubbed_ses):
    from click.testing import CliRunner

    app, stubber = stubbed_ses
    with app.extensions["newsletter.db"].transaction() as session:
        suppressions.suppress(session, "known@example.com", SuppressionReason.COMPLAINT, None)
    stubber.add_response(
        "list_suppressed_destinations",
        {
            "SuppressedDestinationSummaries": [
                _summary("A@example.com", "BOUNCE"),
                _summary("known@example.com", "COMPLAINT"),
            ],
            "NextToken": "page-2",
        },
        {"PageSize": 1000},
    )
    stubber.add_response(
        "list_suppressed_destinations",
        {"SuppressedDestinationSummaries": [_summary("b@example.com", "COMPLAINT")]},
        {"PageSize": 1000, "NextToken": "page-2"},
    )
    result = CliRunner().invoke(cli_main, ["suppressions", "import-ses"], obj=CliState(app))
    assert result.exit_code == 0, result.output
    assert "Read 3 address(es) from SES; 2 newly suppressed." in result.stdout
    stubber.assert_no_pending_responses()
    with app.extensions["newsletter.db"].transaction() as session:
        rows = dict(session.execute(sa.select(Suppression.email, Suppression.reason)).all())
    assert rows == {
        "a@example.com": SuppressionReason.SES_LIST,
        "b@example.com": SuppressionReason.SES_LIST,
        "known@example.com": SuppressionReason.COMPLAINT,
    }


def test_import_ses_error_is_one_line_and_imports_nothing(stubbed_ses):
    from click.testing import CliRunner

    app, stubber = stubbed_ses
    stubber.add_response(
        "list_suppressed_destinations",
        {"SuppressedDestinationSummaries": [_summary("a@example.com", "BOUNCE")], "NextToken": "2"},
        {"PageSize": 1000},
    )
    stubber.add_client_error(
        "list_suppressed_destinations",
        service_error_code="TooManyRequestsException",
        service_message="Too many requests",
        http_status_code=429,
    )
    result = CliRunner().invoke(cli_main, ["suppressions", "import-ses"], obj=CliState(app))
    assert result.exit_code == 1
    assert "SES refused: TooManyRequestsException: Too many requests" in result.output
    with app.extensions["newsletter.db"].transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
