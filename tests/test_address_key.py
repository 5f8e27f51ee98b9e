"""One address key (ASCII, punycode domain, lower case) in every table and every check."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import migrations
from newsletter import sending
from newsletter import suppressions
from newsletter.addresses import InvalidAddress
from newsletter.addresses import address_key
from newsletter.addresses import normalize_address
from newsletter.db import make_engine
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Subscriber
from newsletter.models import Suppression
from newsletter.models import SuppressionReason
from tests.conftest import BACKENDS

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
IDN_KEY = "juergen@xn--bcher-kva.example"


@pytest.mark.parametrize(
    "typed",
    [
        "juergen@bücher.example",
        "Juergen@BÜCHER.example",
        "juergen@xn--bcher-kva.example",
        "JUERGEN@XN--BCHER-KVA.EXAMPLE",
        " juergen@bücher.example ",
    ],
)
def test_every_form_of_an_address_has_one_key(typed):
    assert address_key(typed) == IDN_KEY
    address = normalize_address(typed)
    assert address.key == IDN_KEY
    assert address.ascii.lower() == IDN_KEY
    assert address.display.lower() == "juergen@bücher.example"


def test_idna_2008_not_2003():
    # IDNA 2003 mapped ß to "ss"; IDNA 2008 keeps it (the `idna` library).
    assert address_key("a@faß.de") == "a@xn--fa-hia.de"


@pytest.mark.parametrize("typed", ["jürgen@example.com", "用户@例子.广告", "josé@example.com"])
def test_non_ascii_local_part_is_refused_with_a_clear_message(typed):
    with pytest.raises(InvalidAddress, match="cannot deliver to such addresses"):
        normalize_address(typed)


@pytest.mark.parametrize(
    "stored_as",
    ["juergen@xn--bcher-kva.example", "juergen@bücher.example", "JUERGEN@Bücher.Example"],
)
def test_a_suppressed_idn_address_gets_no_mail(
    app, db_session, make_list, make_subscriber, outbox, stored_as
):
    """The measured fault: suppressed in one form, checked in another, still mailed."""
    weekly = make_list()
    reader = make_subscriber(weekly, email="juergen@bücher.example")
    other = make_subscriber(weekly, email="ada@example.org")
    assert reader.subscriber.email == IDN_KEY
    # However the suppression came in (SES import, bounce, operator), it is one key.
    suppressions.suppress(db_session, stored_as, SuppressionReason.HARD_BOUNCE)
    db_session.commit()
    assert db_session.scalars(sa.select(Suppression.email)).all() == [IDN_KEY]
    for form in ("juergen@bücher.example", "juergen@xn--bcher-kva.example"):
        assert suppressions.is_suppressed(db_session, form)
        assert not suppressions.may_send_confirmation(db_session, form)

    plan = sending.plan_send(db_session, ISSUE_FILE, weekly.slug, base_url=app.config["BASE_URL"])
    issue = sending.start_send(db_session, plan)
    db_session.commit()
    rows = dict(
        db_session.execute(
            sa.select(Delivery.subscriber_id, Delivery.status).where(Delivery.issue_id == issue.id)
        ).all()
    )
    assert rows == {
        reader.subscriber_id: DeliveryStatus.SUPPRESSED,
        other.subscriber_id: DeliveryStatus.QUEUED,
    }
    with pytest.raises(sending.SendError, match="suppression list"):
        sending.send_test_copies(
            db_session, outbox, plan, ["juergen@BÜCHER.example"], config=app.config
        )


def test_a_suppressed_idn_address_gets_no_confirmation(client, make_list, db_session, outbox):
    make_list()
    suppressions.suppress(db_session, "juergen@xn--bcher-kva.example", SuppressionReason.MANUAL)
    db_session.commit()
    response = client.post("/subscribe", data={"email": "juergen@bücher.example", "list": "weekly"})
    assert response.status_code == 303  # the same "check your inbox" as any signup
    assert outbox.messages == []


def test_idn_signup_stores_the_key_and_mails_punycode(client, make_list, db_session, outbox):
    make_list()
    response = client.post(
        "/subscribe", data={"email": "Juergen@Bücher.example", "name": "Jürgen", "list": "weekly"}
    )
    assert response.status_code == 303
    db_session.rollback()
    subscriber = db_session.scalar(sa.select(Subscriber))
    assert (subscriber.email, subscriber.display_email) == (IDN_KEY, "Juergen@bücher.example")
    (message,) = outbox.messages
    assert message.recipient == "Juergen@xn--bcher-kva.example"
    head = message.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "<Juergen@xn--bcher-kva.example>" in head
    assert "=?utf-8?q?b=C3=BCcher" not in head


def test_non_ascii_local_part_refused_at_signup(client, make_list, db_session, outbox):
    make_list()
    response = client.post("/subscribe", data={"email": "jürgen@example.com", "list": "weekly"})
    assert response.status_code == 422
    assert "cannot deliver to such addresses" in response.get_data(as_text=True)
    assert outbox.messages == []


def test_non_ascii_local_part_refused_at_import(runner, make_list, tmp_path):
    make_list()
    path = tmp_path / "readers.csv"
    path.write_text("email\nada@example.org\njürgen@example.com\n", encoding="utf-8")
    result = runner("subscribers", "import", str(path), "--list", "weekly", "--consented")
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    assert "imported:                   1" in result.stdout
    assert 'line 3: email "jürgen@example.com": That email address has letters outside plain' in (
        result.stdout
    )
    assert "Amazon SES" in result.stdout


# --- The migration ---------------------------------------------------------------------

OLD = "a4c8e2f61b7d"
NEW = "a7c4e2f9d031"


def _insert(conn, table, **values):
    columns = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    return conn.execute(
        sa.text(f"INSERT INTO {table} ({columns}) VALUES ({params}) RETURNING id"), values
    ).scalar_one()


@pytest.fixture(params=BACKENDS)
def scratch_url(request, tmp_path):
    """An empty database of its own (the migration test starts from an older revision)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    name = base.rsplit("/", 1)[1] + "_migr"
    admin = sa.create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_migration_rewrites_keys_and_merges_what_collapses(scratch_url):
    engine = make_engine(scratch_url)
    migrations.upgrade(engine, OLD)
    t0, t1 = "2026-01-01 10:00:00", "2026-02-01 10:00:00"
    with engine.begin() as conn:
        list_id = _insert(
            conn, "mailing_list", slug="w", name="W", from_address="n@example.com", created_at=t0
        )
        # Two records that are one address under the new key (an old import stored the
        # punycode form), each on the list: the unsubscribed one must win.
        keep = _insert(
            conn,
            "subscriber",
            email="juergen@bücher.example",
            display_email="juergen@bücher.example",
            created_at=t0,
        )
        gone = _insert(
            conn,
            "subscriber",
            email="juergen@xn--bcher-kva.example",
            display_email="juergen@xn--bcher-kva.example",
            created_at=t1,
        )
        plain = _insert(
            conn,
            "subscriber",
            email="ada@example.org",
            display_email="Ada@example.org",
            created_at=t0,
        )
        subs = {}
        for who, status in ((keep, "active"), (gone, "unsubscribed"), (plain, "active")):
            subs[who] = _insert(
                conn,
                "subscription",
                subscriber_id=who,
                list_id=list_id,
                status=status,
                created_at=t0,
                status_changed_at=t1,
                source="form",
            )
        event = _insert(
            conn,
            "subscription_event",
            subscription_id=subs[gone],
            status="unsubscribed",
            at=t1,
            reason="one-click",
        )
        _insert(conn, "confirmation_email", subscriber_id=gone, list_id=list_id, sent_at=t1)
        # Suppressions in both forms: the complaint wins, the other reason is kept in detail.
        _insert(
            conn, "suppression", email="juergen@bücher.example", reason="hard_bounce", created_at=t0
        )
        _insert(
            conn,
            "suppression",
            email="juergen@xn--bcher-kva.example",
            reason="complaint",
            created_at=t1,
        )
        _insert(conn, "suppression", email="x@bücher.example", reason="manual", created_at=t0)
        for email in ("juergen@bücher.example", "juergen@xn--bcher-kva.example"):
            _insert(
                conn,
                "feedback_event",
                kind="bounce",
                ses_message_id="m1",
                email=email,
                occurred_at=t1,
                received_at=t1,
            )
        _insert(conn, "user_account", email="ed@bücher.example", password_hash="x", created_at=t0)
    migrations.upgrade(engine)
    assert migrations.current(engine) != OLD
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, email FROM subscriber ORDER BY id")).all() == [
            (keep, IDN_KEY),
            (plain, "ada@example.org"),
        ]
        statuses = dict(
            conn.execute(sa.text("SELECT subscriber_id, status FROM subscription")).all()
        )
        assert statuses == {keep: "unsubscribed", plain: "active"}
        assert (
            conn.execute(
                sa.text("SELECT subscription_id FROM subscription_event WHERE id = :id"),
                {"id": event},
            ).scalar_one()
            == subs[keep]
        )
        assert conn.execute(sa.text("SELECT subscriber_id FROM confirmation_email")).all() == [
            (keep,)
        ]
        rows = conn.execute(
            sa.text("SELECT email, reason, detail FROM suppression ORDER BY email")
        ).all()
        assert [(r.email, r.reason) for r in rows] == [
            (IDN_KEY, "complaint"),
            ("x@xn--bcher-kva.example", "manual"),
        ]
        assert "also hard_bounce" in rows[0].detail
        assert conn.execute(sa.text("SELECT email FROM feedback_event")).all() == [(IDN_KEY,)]
        assert conn.execute(sa.text("SELECT email FROM user_account")).all() == [
            ("ed@xn--bcher-kva.example",)
        ]
    # Down and up again: the Unicode form comes back, then the key.
    with engine.begin() as conn:
        from alembic import command

        command.downgrade(migrations.alembic_config(conn), OLD)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT email FROM subscriber ORDER BY id")).all()[0] == (
            "juergen@bücher.example",
        )
    migrations.upgrade(engine)
    engine.dispose()
