"""Subscribers core: remove, GDPR erase, CSV export, and the `newsletter subscribers` commands."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter import imports
from newsletter import subscribers as core
from newsletter import subscriptions
from newsletter import tokens
from newsletter.db import Base
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.models import ConfirmationEmail
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import FeedbackEvent
from newsletter.models import FeedbackKind
from newsletter.models import MailingList
from newsletter.models import RateLimitCounter
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason
from tests.conftest import SECRET_KEY

VICTIM = "Joerg.Weiss@Exämple.ORG"
VICTIM_KEY = "joerg.weiss@xn--exmple-cua.org"  # the one address key
VICTIM_ASCII = "joerg.weiss@xn--exmple-cua.org"
VICTIM_NAME = "Jörg Weißmüller"


@pytest.fixture
def lists(make_list) -> dict[str, Any]:
    return {
        "weekly": make_list(slug="weekly", name="Weekly"),
        "monthly": make_list(slug="monthly", name="Monthly", from_address="m@example.com"),
    }


@pytest.fixture
def victim(db_session, lists, make_subscriber, make_ledger, clock) -> dict[str, Any]:
    """A subscriber whose personal data sits in every table that can hold it."""
    weekly = make_subscriber(lists["weekly"], email=VICTIM, name=VICTIM_NAME)
    monthly = make_subscriber(
        lists["monthly"],
        email=VICTIM,
        status=SubscriptionStatus.PENDING,
        confirm_nonce="nonce-123",
        consent_ip="203.0.113.9",
        consent_form="https://blog.example.net/signup?ref=jörg",
    )
    subscriber_id = weekly.subscriber_id
    db_session.add_all(
        [
            SubscriptionEvent(
                subscription_id=weekly.id,
                status=SubscriptionStatus.ACTIVE,
                reason="confirm",
                ip="203.0.113.9",
            ),
            SubscriptionEvent(
                subscription_id=monthly.id,
                status=SubscriptionStatus.PENDING,
                reason="signup",
                ip="203.0.113.10",
            ),
            ConfirmationEmail(subscriber_id=subscriber_id, list_id=lists["monthly"].id),
            RateLimitCounter(
                key=subscriptions.address_limit_key(VICTIM_KEY),
                window_start=clock.current,
                count=2,
            ),
            Suppression(
                email=VICTIM_KEY, reason=SuppressionReason.MANUAL, detail=f"asked by {VICTIM_KEY}"
            ),
        ]
    )
    db_session.commit()
    issue, rows = make_ledger([VICTIM_KEY], mailing_list=lists["weekly"])
    rows[0].error = f"550 5.1.1 <{VICTIM_ASCII}>: mailbox unavailable"
    db_session.add(
        FeedbackEvent(
            kind=FeedbackKind.BOUNCE,
            ses_message_id=rows[0].ses_message_id,
            email=VICTIM_KEY,
            bounce_type="Transient",
            bounce_subtype="General",
            delivery_id=rows[0].id,
            issue_id=issue.id,
            subscriber_id=subscriber_id,
            occurred_at=clock.current,
            detail=f"smtp; 452 4.2.2 {VICTIM} is over quota",
        )
    )
    db_session.commit()
    return {
        "subscriber_id": subscriber_id,
        "weekly": weekly.id,
        "monthly": monthly.id,
        "issue": issue.id,
        "delivery": rows[0].id,
    }


def _every_text_value(db_session) -> list[tuple[str, str, str]]:
    """(table, column, value) of every non-empty text cell in the database."""
    found = []
    for table in Base.metadata.sorted_tables:
        text_columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.Text)]
        if not text_columns:
            continue
        for row in db_session.execute(sa.select(*text_columns)).all():
            for column, value in zip(text_columns, row, strict=True):
                if value:
                    found.append((table.name, column.name, str(value)))
    return found


def _per_list(db_session) -> dict[int, int]:
    return dict(
        db_session.execute(
            sa.select(Subscription.list_id, sa.func.count()).group_by(Subscription.list_id)
        ).all()
    )


# --- remove -------------------------------------------------------------------------------


def test_remove_unsubscribes_from_every_live_list(db_session, lists, make_subscriber, clock):
    make_subscriber(lists["weekly"], email="ann@example.com")
    pending = make_subscriber(
        lists["monthly"],
        email="ann@example.com",
        status=SubscriptionStatus.PENDING,
        confirm_nonce="abc",
    )
    removal = core.remove(db_session, "  Ann@Example.com ")
    db_session.commit()
    assert removal == core.Removal(email="ann@example.com", lists=["monthly", "weekly"])
    rows = db_session.scalars(sa.select(Subscription).order_by(Subscription.id)).all()
    assert {r.status for r in rows} == {SubscriptionStatus.UNSUBSCRIBED}
    assert all(r.unsubscribed_at == clock.current for r in rows)
    assert db_session.get(Subscription, pending.id).confirm_nonce is None
    events = db_session.execute(sa.select(SubscriptionEvent.status, SubscriptionEvent.reason)).all()
    assert sorted(events) == [(SubscriptionStatus.UNSUBSCRIBED, "admin")] * 2
    # The record stays: the address is still known (so imports refuse it).
    assert db_session.scalar(sa.select(Subscriber.name)) == "René Luçon"


def test_remove_leaves_bounced_and_complained_as_they_are(db_session, lists, make_subscriber):
    make_subscriber(lists["weekly"], email="bo@example.com", status=SubscriptionStatus.BOUNCED)
    make_subscriber(lists["monthly"], email="bo@example.com", status=SubscriptionStatus.COMPLAINED)
    removal = core.remove(db_session, "bo@example.com")
    assert removal.lists == []
    statuses = set(db_session.scalars(sa.select(Subscription.status)))
    assert statuses == {SubscriptionStatus.BOUNCED, SubscriptionStatus.COMPLAINED}
    assert db_session.scalar(sa.select(sa.func.count()).select_from(SubscriptionEvent)) == 0


def test_remove_twice_changes_nothing_the_second_time(db_session, lists, make_subscriber):
    make_subscriber(lists["weekly"], email="cy@example.com")
    assert core.remove(db_session, "cy@example.com").lists == ["weekly"]
    assert core.remove(db_session, "cy@example.com").lists == []
    assert db_session.scalar(sa.select(sa.func.count()).select_from(SubscriptionEvent)) == 1


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        ("nobody@example.com", NotFound, "nobody@example.com is not a subscriber"),
        ("not an address", NewsletterError, ""),
        ("a@b.c\r\nBcc: x@y.z", NewsletterError, ""),
    ],
)
@pytest.mark.parametrize("action", [core.remove, core.erase])
def test_remove_and_erase_refuse_unknown_or_bad_addresses(
    db_session, lists, make_subscriber, action, address, error, message
):
    make_subscriber(lists["weekly"], email="dee@example.com")
    with pytest.raises(error) as raised:
        action(db_session, address)
    assert message in str(raised.value)
    assert str(raised.value)
    # Nothing lost.
    assert db_session.scalar(sa.select(Subscription.status)) is SubscriptionStatus.ACTIVE


# --- erase --------------------------------------------------------------------------------


def test_erase_leaves_no_personal_data_in_any_table(db_session, victim, clock):
    counts_before = _per_list(db_session)
    erasure = core.erase(db_session, VICTIM)
    db_session.commit()
    placeholder = f"erased-{victim['subscriber_id']}@erased.invalid"
    assert erasure == core.Erasure(victim["subscriber_id"], placeholder, 2)

    needles = {"joerg", "weiss", "exämple", "xn--exmple", "jörg", "weiß", "203.0.113."}
    leaks = [
        (table, column, value)
        for table, column, value in _every_text_value(db_session)
        if any(needle in value.lower() for needle in needles)
    ]
    assert leaks == []

    subscriber = db_session.get(Subscriber, victim["subscriber_id"])
    assert (subscriber.email, subscriber.display_email, subscriber.name) == (
        placeholder,
        placeholder,
        None,
    )
    assert subscriber.erased_at == clock.current
    # Hashed or keyed rows that a text scan cannot see are gone too.
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ConfirmationEmail)) == 0
    assert db_session.scalar(sa.select(sa.func.count()).select_from(RateLimitCounter)) == 0
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    for subscription in db_session.scalars(sa.select(Subscription)):
        assert subscription.consent_ip is None
        assert subscription.consent_form is None
        assert subscription.confirm_nonce is None
        assert subscription.status is SubscriptionStatus.UNSUBSCRIBED
    assert db_session.scalars(sa.select(SubscriptionEvent.ip)).all() == [None] * 4
    # Anonymous counts stay: per list, the ledger row, the bounce.
    assert _per_list(db_session) == counts_before
    delivery = db_session.get(Delivery, victim["delivery"])
    assert delivery.status is DeliveryStatus.SENT
    assert delivery.error == f"550 5.1.1 <{placeholder}>: mailbox unavailable"
    assert delivery.subscription_id in set(db_session.scalars(sa.select(Subscription.id)))
    feedback = db_session.scalar(sa.select(FeedbackEvent))
    assert (feedback.kind, feedback.email) == (FeedbackKind.BOUNCE, placeholder)
    assert feedback.detail == f"smtp; 452 4.2.2 {placeholder} is over quota"


def test_erase_keeps_the_history_and_adds_an_erase_event(db_session, victim):
    core.erase(db_session, VICTIM)
    db_session.commit()
    reasons = db_session.execute(
        sa.select(SubscriptionEvent.reason).order_by(SubscriptionEvent.id)
    ).scalars()
    assert sorted(reasons) == ["confirm", "erase", "erase", "signup"]


def test_old_links_no_longer_resolve_after_erase(app, db_session, victim):
    old_unsubscribe = tokens.make_unsubscribe_token(SECRET_KEY, victim["weekly"])
    old_confirm = tokens.make_confirm_token(SECRET_KEY, victim["monthly"], "nonce-123")
    core.erase(db_session, VICTIM)
    db_session.commit()
    assert db_session.get(Subscription, victim["weekly"]) is None
    assert db_session.get(Subscription, victim["monthly"]) is None
    with pytest.raises(subscriptions.SubscriptionGone):
        subscriptions.subscription_for_unsubscribe_token(db_session, old_unsubscribe, app.config)
    with pytest.raises(tokens.InvalidToken):
        subscriptions.pending_for_token(db_session, old_confirm, app.config)


def test_old_unsubscribe_link_page_after_erase(client, db_session, victim):
    token = tokens.make_unsubscribe_token(SECRET_KEY, victim["weekly"])
    core.erase(db_session, VICTIM)
    db_session.commit()
    db_session.close()
    # Off every list already, which is what the reader came for: a friendly page (issue 15).
    response = client.get(f"/u/{token}")
    assert response.status_code == 200
    assert "no longer on our lists" in response.get_data(as_text=True)
    one_click = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200


def test_erase_twice_is_a_no_op(db_session, victim, clock):
    first = core.erase(db_session, VICTIM)
    db_session.commit()
    erased_at = db_session.get(Subscriber, victim["subscriber_id"]).erased_at
    snapshot = sorted(_every_text_value(db_session))
    clock.advance(days=1)
    second = core.erase(db_session, first.placeholder)
    db_session.commit()
    assert second.already_erased is True
    assert second.subscriptions == 0
    assert sorted(_every_text_value(db_session)) == snapshot
    db_session.expire_all()
    assert db_session.get(Subscriber, victim["subscriber_id"]).erased_at == erased_at
    # By object (the console) too; and the old address is no longer found at all.
    subscriber = db_session.get(Subscriber, victim["subscriber_id"])
    assert core.erase(db_session, subscriber).already_erased is True
    with pytest.raises(NotFound):
        core.erase(db_session, VICTIM)


def test_erase_by_object_and_leaves_others_alone(db_session, lists, make_subscriber, victim):
    other = make_subscriber(lists["weekly"], email="keep@example.com", name="Keep Me")
    subscriber = db_session.get(Subscriber, victim["subscriber_id"])
    core.erase(db_session, subscriber)
    db_session.commit()
    kept = db_session.get(Subscriber, other.subscriber_id)
    assert (kept.email, kept.name) == ("keep@example.com", "Keep Me")
    assert db_session.get(Subscription, other.id).status is SubscriptionStatus.ACTIVE
    assert db_session.get(Subscription, other.id).consent_ip == "192.0.2.1"


# --- export_csv ---------------------------------------------------------------------------


@pytest.fixture
def exportable(db_session, lists, make_subscriber, clock) -> None:
    make_subscriber(lists["weekly"], email="amy@example.com", name="Amy")
    make_subscriber(lists["monthly"], email="amy@example.com", status=SubscriptionStatus.PENDING)
    make_subscriber(lists["weekly"], email="bea@example.com", name='=HYPERLINK("x")')
    make_subscriber(lists["weekly"], email="cal@example.com", name="+49 30 123")
    make_subscriber(lists["weekly"], email="dot@example.com", name="-2+3")
    make_subscriber(lists["weekly"], email="eli@example.com", name="@SUM(A1)")
    make_subscriber(lists["weekly"], email="fay@example.com", name="\tTabbed")
    make_subscriber(
        lists["weekly"], email="gus@example.com", status=SubscriptionStatus.UNSUBSCRIBED
    )
    make_subscriber(lists["weekly"], email="hedi@exämple.de", name="Hédi Ünal, 李")
    make_subscriber(lists["weekly"], email="gone@example.com", name="Gone")
    core.erase(db_session, "gone@example.com")
    db_session.commit()


def _rows(chunks) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(chunks))))


def test_export_has_every_subscription_with_iso_times(db_session, exportable, clock):
    text = "".join(core.export_csv(db_session))
    assert text.splitlines()[0] == "email,name,list,status,created_at,confirmed_at"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["email"], r["list"]) for r in rows][:2] == [
        ("amy@example.com", "monthly"),
        ("amy@example.com", "weekly"),
    ]
    assert len(rows) == 9  # the erased subscriber is left out
    amy = rows[1]
    assert amy["created_at"] == "2026-03-02T09:00:00Z"
    assert amy["confirmed_at"] == "2026-03-02T09:00:00Z"
    assert rows[0]["confirmed_at"] == ""


def test_export_leaves_erased_subscribers_out(db_session, exportable):
    text = "".join(core.export_csv(db_session))
    assert "gone@example.com" not in text
    assert "erased" not in text
    assert "Gone" not in text


@pytest.mark.parametrize(
    ("email", "shown"),
    [
        ("bea@example.com", '\'=HYPERLINK("x")'),
        ("cal@example.com", "'+49 30 123"),
        ("dot@example.com", "'-2+3"),
        ("eli@example.com", "'@SUM(A1)"),
        ("fay@example.com", "'\tTabbed"),
        ("amy@example.com", "Amy"),
    ],
)
def test_export_defuses_formulas(db_session, exportable, email, shown):
    rows = {r["email"]: r for r in _rows(core.export_csv(db_session, list_slug="weekly"))}
    assert rows[email]["name"] == shown


def test_export_keeps_non_ascii_and_quotes_commas(db_session, exportable):
    text = "".join(core.export_csv(db_session, list_slug="weekly"))
    assert '"Hédi Ünal, 李"' in text
    rows = {r["email"]: r for r in _rows([text])}
    assert rows["hedi@exämple.de"]["name"] == "Hédi Ünal, 李"


def test_export_bom_for_excel(db_session, exportable):
    first = next(core.export_csv(db_session, bom=True))
    assert first.startswith("\ufeffemail,name,")
    assert not next(core.export_csv(db_session)).startswith("\ufeff")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"list_slug": "monthly"}, [("amy@example.com", "pending")]),
        ({"status": "unsubscribed"}, [("gus@example.com", "unsubscribed")]),
        ({"status": SubscriptionStatus.PENDING}, [("amy@example.com", "pending")]),
        ({"list_slug": "weekly", "status": "pending"}, []),
    ],
)
def test_export_filters(db_session, exportable, filters, expected):
    rows = _rows(core.export_csv(db_session, **filters))
    assert [(r["email"], r["status"]) for r in rows] == expected


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        # Address or name, any case; a subscriber comes with each of their subscriptions.
        ("AMY", [("amy@example.com", "weekly"), ("amy@example.com", "monthly")]),
        ("hyperlink", [("bea@example.com", "weekly")]),
        ("ünal", [("hedi@exämple.de", "weekly")]),
        ("EXÄMPLE", [("hedi@exämple.de", "weekly")]),
        ("%", []),  # a literal character, not a wildcard
        ("gone", []),  # erased: the name is gone and the row too
        ("  ", None),  # blank: everything
    ],
)
def test_export_search(db_session, exportable, search, expected):
    rows = _rows(core.export_csv(db_session, search=search))
    if expected is None:
        assert len(rows) == 9
    else:
        assert sorted((r["email"], r["list"]) for r in rows) == sorted(expected)


def test_export_search_with_a_status(db_session, exportable):
    rows = _rows(core.export_csv(db_session, search="amy", status="pending"))
    assert [(r["email"], r["list"], r["status"]) for r in rows] == [
        ("amy@example.com", "monthly", "pending")
    ]


def test_export_search_too_long_is_refused_before_any_row(db_session, exportable):
    from newsletter.directory import DirectoryError

    with pytest.raises(DirectoryError, match="too long"):
        next(core.export_csv(db_session, search="x" * 201))


def test_export_unknown_list_is_not_found(db_session, exportable):
    with pytest.raises(NotFound, match="There is no list 'nope'"):
        "".join(core.export_csv(db_session, list_slug="nope"))


def test_export_streams_in_chunks(db_session, exportable):
    chunks = list(core.export_csv(db_session, chunk_rows=4))
    # 9 rows in chunks of 4: two full chunks and the rest (the header rides in the first).
    assert [chunk.count("\n") for chunk in chunks] == [5, 4, 1]
    assert len(_rows(chunks)) == 9


# --- The command line ---------------------------------------------------------------------


def test_cli_export_to_stdout_with_filters(runner, exportable):
    result = runner("subscribers", "export", "--list", "weekly", "--status", "active")
    assert result.exit_code == 0, result.output
    rows = _rows([result.stdout])
    assert [r["email"] for r in rows] == [
        "amy@example.com",
        "bea@example.com",
        "cal@example.com",
        "dot@example.com",
        "eli@example.com",
        "fay@example.com",
        "hedi@exämple.de",
    ]
    assert not result.stdout.startswith("\ufeff")


def test_cli_export_search(runner, exportable):
    result = runner("subscribers", "export", "--search", "Amy", "--list", "monthly")
    assert result.exit_code == 0, result.output
    assert [(r["email"], r["list"]) for r in _rows([result.stdout])] == [
        ("amy@example.com", "monthly")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--list", "nope"), "There is no list 'nope'"),
        (("--status", "vip"), "Invalid value for '--status'"),
        (("--search", "x" * 201), "The search is too long (at most 200 characters)."),
    ],
)
def test_cli_export_bad_filters(runner, exportable, args, message):
    result = runner("subscribers", "export", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_remove(runner, db_session, lists, make_subscriber):
    make_subscriber(lists["weekly"], email="ivy@example.com")
    result = runner("subscribers", "remove", "Ivy@Example.com")
    assert result.exit_code == 0, result.output
    assert "Unsubscribed ivy@example.com from weekly." in result.output
    db_session.expire_all()
    assert db_session.scalar(sa.select(Subscription.status)) is SubscriptionStatus.UNSUBSCRIBED
    db_session.rollback()  # SQLite: free the write lock for the next command
    again = runner("subscribers", "remove", "ivy@example.com")
    assert again.exit_code == 0
    assert "was not subscribed to any list: nothing changed" in again.output


@pytest.mark.parametrize("extra", [(), ("--erase",), ("--erase", "--yes")])
def test_cli_remove_unknown_address(runner, lists, extra):
    result = runner("subscribers", "remove", "nobody@example.com", *extra)
    assert result.exit_code == 1
    assert result.output.strip() == "Error: nobody@example.com is not a subscriber"


def test_cli_remove_bad_address(runner, lists):
    result = runner("subscribers", "remove", "not an address")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_erase_asks_first_and_no_keeps_everything(runner, db_session, victim):
    result = runner("subscribers", "remove", VICTIM, "--erase", input="n\n")
    assert result.exit_code == 1
    assert f"Erase {VICTIM} for good?" in result.output
    assert "Aborted" in result.output
    db_session.expire_all()
    subscriber = db_session.get(Subscriber, victim["subscriber_id"])
    assert (subscriber.email, subscriber.name, subscriber.erased_at) == (
        VICTIM_KEY,
        VICTIM_NAME,
        None,
    )


def test_cli_erase_after_yes_at_the_prompt(runner, db_session, victim):
    result = runner("subscribers", "remove", VICTIM, "--erase", input="y\n")
    assert result.exit_code == 0, result.output
    placeholder = f"erased-{victim['subscriber_id']}@erased.invalid"
    assert f"now {placeholder}, 2 subscription(s) kept as anonymous counts" in result.output
    db_session.expire_all()
    assert db_session.get(Subscriber, victim["subscriber_id"]).name is None


def test_cli_erase_with_yes_does_not_ask(runner, db_session, victim):
    result = runner("subscribers", "remove", VICTIM, "--erase", "--yes")
    assert result.exit_code == 0, result.output
    assert "for good?" not in result.output
    db_session.expire_all()
    assert db_session.get(Subscriber, victim["subscriber_id"]).erased_at is not None
    db_session.rollback()  # SQLite: free the write lock for the next command
    again = runner("subscribers", "remove", VICTIM, "--erase", "--yes")
    assert again.exit_code == 1
    assert "is not a subscriber" in again.output
    placeholder = f"erased-{victim['subscriber_id']}@erased.invalid"
    by_placeholder = runner("subscribers", "remove", placeholder, "--erase", "--yes")
    assert by_placeholder.exit_code == 0, by_placeholder.output
    assert by_placeholder.output.strip() == f"{placeholder} was already erased: nothing changed."


# --- More: mixed statuses, imports afterwards, find_subscriber, CLI wording ---------------


def _import(app, tmp_path, text: str, slug: str = "weekly") -> Any:
    """Run a consented import of `text` into a list, as `subscribers import --consented` does."""
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    return imports.import_csv(
        app.extensions["newsletter.db"],
        path,
        slug,
        mode=imports.ImportMode.CONSENTED,
        mailer=app.extensions["newsletter.mailer"],
        config=app.config,
    )


def _statuses(db_session, subscriber_id: int) -> dict[str, SubscriptionStatus]:
    db_session.expire_all()
    found = dict(
        db_session.execute(
            sa.select(MailingList.slug, Subscription.status)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.subscriber_id == subscriber_id)
        ).all()
    )
    db_session.rollback()  # SQLite: an open read transaction would block the next writer
    return found


def test_remove_turns_live_ones_and_keeps_bounced_in_one_go(
    db_session, lists, make_list, make_subscriber
):
    daily = make_list(slug="daily", name="Daily", from_address="d@example.com")
    weekly = make_subscriber(lists["weekly"], email="mix@example.com")
    make_subscriber(lists["monthly"], email="mix@example.com", status=SubscriptionStatus.PENDING)
    make_subscriber(daily, email="mix@example.com", status=SubscriptionStatus.BOUNCED)
    removal = core.remove(db_session, "MIX@example.COM")
    db_session.commit()
    assert removal.lists == ["monthly", "weekly"]
    assert _statuses(db_session, weekly.subscriber_id) == {
        "daily": SubscriptionStatus.BOUNCED,
        "monthly": SubscriptionStatus.UNSUBSCRIBED,
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
    }
    reasons = db_session.scalars(sa.select(SubscriptionEvent.reason)).all()
    assert reasons == ["admin", "admin"]


def test_import_refuses_a_removed_reader(app, db_session, lists, make_subscriber, tmp_path):
    ann = make_subscriber(lists["weekly"], email="ann@example.com")
    core.remove(db_session, "ann@example.com")
    db_session.commit()
    report = _import(app, tmp_path, "email,name\nAnn@Example.com,Ann Again\nnew@example.com,N\n")
    assert (report.imported, report.refused) == (1, 1)
    assert _statuses(db_session, ann.subscriber_id) == {"weekly": SubscriptionStatus.UNSUBSCRIBED}
    # The same file again changes nothing for her either.
    again = _import(app, tmp_path, "email\nann@example.com\n")
    assert (again.imported, again.refused) == (0, 1)
    assert _statuses(db_session, ann.subscriber_id) == {"weekly": SubscriptionStatus.UNSUBSCRIBED}


def test_import_may_add_an_erased_address_again(app, db_session, victim, tmp_path):
    """Erasure keeps nothing of the address, so (unlike remove) nothing stops an import."""
    core.erase(db_session, VICTIM)
    db_session.commit()
    report = _import(app, tmp_path, f"email\n{VICTIM}\n")
    assert (report.imported, report.refused) == (1, 0)
    db_session.expire_all()
    fresh = db_session.scalar(sa.select(Subscriber).where(Subscriber.email == VICTIM_KEY))
    assert fresh is not None
    assert fresh.id != victim["subscriber_id"]
    assert fresh.name is None  # nothing of the erased record came back


def test_erase_keeps_bounced_and_counts_per_list(db_session, lists, make_list, make_subscriber):
    daily = make_list(slug="daily", name="Daily", from_address="d@example.com")
    first = make_subscriber(lists["weekly"], email="bob@example.com")
    make_subscriber(lists["monthly"], email="bob@example.com", status=SubscriptionStatus.BOUNCED)
    make_subscriber(daily, email="bob@example.com", status=SubscriptionStatus.PENDING)
    make_subscriber(lists["weekly"], email="other@example.com")
    bob, first_id = first.subscriber_id, first.id
    before = _per_list(db_session)
    db_session.rollback()
    erasure = core.erase(db_session, "bob@example.com")
    db_session.commit()
    assert erasure.subscriptions == 3
    assert _per_list(db_session) == before
    assert _statuses(db_session, bob) == {
        "daily": SubscriptionStatus.UNSUBSCRIBED,
        "monthly": SubscriptionStatus.BOUNCED,
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
    }
    assert db_session.get(Subscription, first_id) is None  # stored again under a new id
    consent = db_session.execute(
        sa.select(Subscription.consent_ip, Subscription.consent_form).where(
            Subscription.subscriber_id == bob
        )
    ).all()
    assert consent == [(None, None)] * 3


def test_find_subscriber(db_session, lists, make_subscriber):
    made = make_subscriber(lists["weekly"], email="Fin.Der@Example.com")
    found = core.find_subscriber(db_session, "  fin.der@EXAMPLE.com")
    assert found.id == made.subscriber_id
    assert found.display_email == "Fin.Der@Example.com"
    assert core.find_subscriber(db_session, found) is found
    with pytest.raises(NotFound, match="nobody@example.com is not a subscriber"):
        core.find_subscriber(db_session, "Nobody@example.com")


def test_export_chunks_join_to_the_whole(db_session, exportable):
    whole = "".join(core.export_csv(db_session))
    chunks = list(core.export_csv(db_session, chunk_rows=2))
    assert len(chunks) == 5  # 9 rows: four chunks of two, then the last row
    assert "".join(chunks) == whole
    assert chunks[0].startswith("email,name,list,")
    # Each chunk ends on a whole row, so a stream never splits one.
    assert all(chunk.endswith("\n") for chunk in chunks)


def test_cli_remove_names_every_list(runner, db_session, lists, make_subscriber):
    make_subscriber(lists["weekly"], email="two@example.com")
    make_subscriber(lists["monthly"], email="two@example.com", status=SubscriptionStatus.BOUNCED)
    make_subscriber(lists["monthly"], email="three@example.com")
    make_subscriber(lists["weekly"], email="three@example.com", status=SubscriptionStatus.PENDING)
    db_session.rollback()
    result = runner("subscribers", "remove", "three@example.com")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "Unsubscribed three@example.com from monthly, weekly. The record is kept, so imports "
        "will not add them again."
    )
    bounced_only = runner("subscribers", "remove", "two@example.com")
    assert "Unsubscribed two@example.com from weekly." in bounced_only.output


def test_cli_remove_bounced_only_says_nothing_changed(runner, db_session, lists, make_subscriber):
    bo = make_subscriber(lists["weekly"], email="bo@example.com", status=SubscriptionStatus.BOUNCED)
    db_session.rollback()
    result = runner("subscribers", "remove", "bo@example.com")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "bo@example.com was not subscribed to any list: nothing changed."
    )
    assert _statuses(db_session, bo.subscriber_id) == {"weekly": SubscriptionStatus.BOUNCED}


def test_cli_erase_answer_no_changes_no_row(runner, db_session, victim):
    snapshot = sorted(_every_text_value(db_session))
    db_session.rollback()
    result = runner("subscribers", "remove", VICTIM, "--erase", input="n\n")
    assert result.exit_code == 1
    assert result.output.rstrip().endswith("Aborted!")
    db_session.expire_all()
    assert sorted(_every_text_value(db_session)) == snapshot
    assert _statuses(db_session, victim["subscriber_id"]) == {
        "monthly": SubscriptionStatus.PENDING,
        "weekly": SubscriptionStatus.ACTIVE,
    }


def test_cli_export_parses_with_every_row(runner, db_session, exportable):
    db_session.rollback()
    result = runner("subscribers", "export")
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(core.export_csv(db_session))
    db_session.rollback()  # SQLite: free the lock for the next command
    rows = _rows([result.stdout])
    assert len(rows) == 9
    by_email = {(r["email"], r["list"]): r for r in rows}
    assert by_email[("bea@example.com", "weekly")]["name"] == '\'=HYPERLINK("x")'
    assert by_email[("hedi@exämple.de", "weekly")]["name"] == "Hédi Ünal, 李"
    assert by_email[("gus@example.com", "weekly")]["status"] == "unsubscribed"
    monthly = runner("subscribers", "export", "--list", "monthly")
    assert monthly.exit_code == 0, monthly.output
    assert [(r["email"], r["status"]) for r in _rows([monthly.stdout])] == [
        ("amy@example.com", "pending")
    ]
