"""Subscriber imports from CSV (newsletter.imports and `newsletter subscribers import`).

The big test builds a 10,000-row file with every awkward thing a real export contains and
asserts every counter of the report and the database afterwards, exactly.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask

from newsletter import imports
from newsletter import subscriptions
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.imports import BadRow
from newsletter.imports import ImportFileError
from newsletter.imports import ImportMode
from newsletter.mail import MemoryMailer
from newsletter.models import ConfirmationEmail
from newsletter.models import ImportJob
from newsletter.models import ImportStatus
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason

S = SubscriptionStatus


def database(app: Flask) -> Any:
    return app.extensions["newsletter.db"]


def run_import(app: Flask, source: Any, slug: str = "weekly", **kwargs: Any) -> Any:
    kwargs.setdefault("mode", ImportMode.CONSENTED)
    kwargs.setdefault("mailer", app.extensions["newsletter.mailer"])
    kwargs.setdefault("config", app.config)
    return imports.import_csv(database(app), source, slug, **kwargs)


def write(tmp_path: Path, text: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def statuses(session: so.Session, mailing_list: MailingList) -> dict[str, S]:
    """Every subscription of a list: {address: status}."""
    session.expire_all()
    rows = session.execute(
        sa.select(Subscriber.email, Subscription.status)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == mailing_list.id)
    )
    found = {email: status for email, status in rows}
    session.commit()  # on SQLite an open transaction holds the write lock
    return found


def stored(session: so.Session) -> tuple[int, int, int, int]:
    """How many subscribers, subscriptions, events and confirmation emails are stored."""
    session.expire_all()
    counts = tuple(
        session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (Subscriber, Subscription, SubscriptionEvent, ConfirmationEmail)
    )
    session.commit()
    return counts


def subscriber(session: so.Session, email: str) -> Subscriber | None:
    session.expire_all()
    found = session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
    session.commit()
    return found


# --- The 10,000-row file ----------------------------------------------------------------

N_ROWS = 10_000
N_DUPLICATES = 600
INVALID_EMAILS = [
    "not-an-email",
    "two@@at.example",
    "nodomain@",
    "@nolocal.example",
    "spaces in@x.example",
    "a@b",
    "dot..dot@x.example",
    "zoë@bücher.example",  # non-ASCII before the @: not supported
]
SPECIAL = {
    "unsubscribed": "gone@leavers.example",
    "bounced": "bounce@leavers.example",
    "complained": "angry@leavers.example",
    "suppressed": "blocked@leavers.example",
    "active": "known@friends.example",  # on the list already, without a name
    "pending": "waiting@friends.example",  # on the list already, waiting to confirm
    "elsewhere": "elsewhere@friends.example",  # on another list only
}


@dataclass
class BigFile:
    path: Path
    unique: list[str] = field(default_factory=list)  # the valid new addresses, in file order
    bad_lines: list[int] = field(default_factory=list)
    bad_values: list[str] = field(default_factory=list)
    blank: int = 0
    rows: int = 0
    lines: int = 0


def good_email(i: int) -> str:
    return f"reader{i:05d}@d{i % 97:02d}.example.org"


def good_name(i: int) -> str:
    if i == 0:
        return "Zoë Ångström"
    if i % 10 == 3:
        return f"Lovelace; Ada {i}"  # the delimiter inside a quoted field
    if i % 7 == 0:
        return ""
    return f"Reader {i}"


def build_big_file(path: Path) -> BigFile:
    """Write the 10,000-row semicolon CSV with a BOM; return what it holds, line by line."""
    n_special_rows = len(SPECIAL) + 1  # the unsubscribed address comes twice
    n_bad = 380
    n_unique = N_ROWS - N_DUPLICATES - n_bad - n_special_rows
    # (sort key, kind, fields): sorted, so each repeat comes 500 rows after the first.
    records: list[tuple[float, str, list[str]]] = []
    for i in range(n_unique):
        notes = ""
        if i % 50 == 1:
            notes = 'said "hi"; twice'
        if i == 123:
            notes = "a note on\ntwo lines"  # a quoted field across two physical lines
        records.append((i, "good", [good_email(i), good_name(i), notes]))
    for j in range(N_DUPLICATES):
        i = j * 13 % n_unique
        email = good_email(i)
        variant = [email.upper(), email.capitalize(), email.replace("@d", "@D")][j % 3]
        name = good_name(i) or f"Later {i}"
        records.append((i + 500.5, "dup", [f"  {variant} ", name, "again"]))
    for k in range(n_bad):
        if k % 10 == 8:
            fields = ["", "Nobody", "no address"]
        elif k % 10 == 9:
            fields = [f"ml{k}@names.example", "Ada\nLovelace", "a line break in a name"]
        else:
            fields = [INVALID_EMAILS[k % len(INVALID_EMAILS)], f"Bad {k}", ""]
        records.append((k * 26.3 + 0.25, "bad", fields))
    for n, email in enumerate(SPECIAL.values()):
        records.append((n * 1400 + 0.75, "special", [email, "From The File", ""]))
    records.append((9000.75, "special", ["GONE@Leavers.Example", "", ""]))
    records.sort(key=lambda r: r[0])
    assert len(records) == N_ROWS

    info = BigFile(path)
    out = io.StringIO()
    minimal = csv.writer(out, delimiter=";", lineterminator="\r\n")
    quote_all = csv.writer(out, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    out.write("\ufeff")
    quote_all.writerow(["E-mail", "Full name", "Notes"])
    line = 1
    for n, (_, kind, fields) in enumerate(records):
        if n % 500 == 250:
            out.write("\r\n")  # a blank line
            line += 1
            info.blank += 1
        if n % 2000 == 1000:
            out.write(";;\r\n")  # a row of empty cells counts as blank too
            line += 1
            info.blank += 1
        if n == 4321:
            out.write("   \r\n")
            line += 1
            info.blank += 1
        start = out.tell()
        (quote_all if n % 4 == 0 else minimal).writerow(fields)
        written = out.getvalue()[start:]
        first_line = line + 1
        line += written.count("\n")
        info.rows += 1
        if kind == "bad":
            info.bad_lines.append(first_line)
            info.bad_values.append(fields[0])
        elif kind == "good":
            info.unique.append(fields[0])
    out.write("\r\n\r\n")  # trailing blank lines, as spreadsheets write them
    info.blank += 2
    info.lines = line + 2
    path.write_bytes(out.getvalue().encode("utf-8"))
    return info


@pytest.fixture
def lists(make_list: Callable[..., MailingList]) -> tuple[MailingList, MailingList]:
    weekly = make_list()
    monthly = make_list(slug="monthly", name="o11y monthly")
    return weekly, monthly


@pytest.fixture
def known(
    lists: tuple[MailingList, MailingList],
    make_subscriber: Callable[..., Subscription],
    db_session: so.Session,
) -> dict[str, str]:
    """The addresses of SPECIAL, stored as their names say."""
    weekly, monthly = lists
    make_subscriber(weekly, SPECIAL["unsubscribed"], status=S.UNSUBSCRIBED)
    make_subscriber(weekly, SPECIAL["bounced"], status=S.BOUNCED)
    make_subscriber(weekly, SPECIAL["complained"], status=S.COMPLAINED)
    make_subscriber(weekly, SPECIAL["active"], name=None)
    make_subscriber(weekly, SPECIAL["pending"], name="Kept Name", status=S.PENDING)
    make_subscriber(monthly, SPECIAL["elsewhere"])
    db_session.add(Suppression(email=SPECIAL["suppressed"], reason=SuppressionReason.MANUAL))
    db_session.commit()
    return SPECIAL


def test_ten_thousand_rows_exact_counts(
    app: Flask,
    tmp_path: Path,
    lists: tuple[MailingList, MailingList],
    known: dict[str, str],
    db_session: so.Session,
    outbox: MemoryMailer,
) -> None:
    weekly, monthly = lists
    big = build_big_file(tmp_path / "big.csv")
    assert big.path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(big.unique) == 9012 and len(big.bad_lines) == 380 and big.blank == 28
    progress: list[tuple[int, int, int]] = []

    report = run_import(
        app,
        big.path,
        source_label="import: big.csv",
        progress=lambda *args: progress.append(args),
        batch_size=4000,
    )

    assert report.rows == N_ROWS
    assert report.imported == 9012 + 1  # the new addresses, and the one from another list
    assert report.confirmations == 0
    assert report.merged == N_DUPLICATES + 2  # the repeats, and the two already on the list
    assert report.refused == 5  # unsubscribed (twice), bounced, complained, suppressed
    assert report.blank == 28
    assert report.bad_count == 380
    assert report.email_column == "E-mail" and report.name_column == "Full name"
    assert report.rows == (report.imported + report.merged + report.refused + report.bad_count)
    assert [bad.line for bad in report.bad] == big.bad_lines
    for bad, value in zip(report.bad, big.bad_values, strict=True):
        if value == "":
            assert bad.reason == "no email address"
        elif value.startswith("ml"):
            assert bad.reason.startswith('name "Ada\\nLovelace": ') and "line breaks" in bad.reason
        else:
            assert bad.reason.startswith(f"email {json.dumps(value, ensure_ascii=False)}: ")
    # Progress after each batch, ending at the whole file.
    size = big.path.stat().st_size
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert progress[-1] == (N_ROWS, size, size)
    assert len(progress) >= 3

    found = statuses(db_session, weekly)
    counts = {status: list(found.values()).count(status) for status in S}
    assert counts == {
        S.ACTIVE: 9012 + 2,
        S.PENDING: 1,
        S.UNSUBSCRIBED: 1,
        S.BOUNCED: 1,
        S.COMPLAINED: 1,
    }
    assert {email for email, status in found.items() if status is S.ACTIVE} == {
        *big.unique,
        known["active"],
        known["elsewhere"],
    }
    assert found[known["unsubscribed"]] is S.UNSUBSCRIBED
    assert found[known["bounced"]] is S.BOUNCED
    assert found[known["complained"]] is S.COMPLAINED
    assert known["suppressed"] not in found
    assert subscriber(db_session, known["suppressed"]) is None
    assert statuses(db_session, monthly) == {known["elsewhere"]: S.ACTIVE}
    subscribers, subscriptions_, events, confirmations = stored(db_session)
    assert subscribers == 9012 + 6
    assert subscriptions_ == 9013 + 6
    assert events == 9013  # make_subscriber writes none; one "import" event per new row
    assert confirmations == 0
    assert outbox.messages == []

    # The consent is recorded as this import.
    new = db_session.execute(
        sa.select(Subscription.source, Subscription.consent_form, Subscription.confirmed_at)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscription.list_id == weekly.id, Subscriber.email.in_(big.unique[:500]))
    ).all()
    assert len(new) == 500
    assert {(row.source, row.consent_form) for row in new} == {("import", "import: big.csv")}
    assert all(row.confirmed_at is not None for row in new)
    assert {e.reason for e in db_session.scalars(sa.select(SubscriptionEvent))} == {"import"}

    # Names and addresses as the first row gave them; a later row fills a missing name.
    zoe = subscriber(db_session, good_email(0))
    assert zoe.name == "Zoë Ångström" and zoe.display_email == good_email(0)
    assert subscriber(db_session, good_email(3)).name == "Lovelace; Ada 3"
    assert subscriber(db_session, good_email(91)).name == "Later 91"
    assert subscriber(db_session, good_email(7)).name is None  # no repeat of it in the file
    assert subscriber(db_session, good_email(123)).name == "Lovelace; Ada 123"
    assert subscriber(db_session, known["active"]).name == "From The File"
    assert subscriber(db_session, known["pending"]).name == "Kept Name"
    assert subscriber(db_session, known["unsubscribed"]).display_email == known["unsubscribed"]

    # Running it again changes nothing: every row is merged or refused now.
    before = stored(db_session)
    again = run_import(app, big.path, batch_size=4000)
    assert (again.rows, again.imported, again.merged, again.refused, again.bad_count) == (
        N_ROWS,
        0,
        N_ROWS - 380 - 5,
        5,
        380,
    )
    assert stored(db_session) == before
    assert statuses(db_session, weekly) == found


def test_line_numbers_with_quoted_multiline_fields(app: Flask, tmp_path: Path, lists: Any) -> None:
    text = (
        "\n"  # a blank line before the header
        "name,email,notes\n"  # line 2
        'Ada,ada@example.org,"first\nsecond\nthird"\n'  # lines 3-5
        "Bad,not-an-email,\n"  # line 6
        "\n"  # line 7
        '"Multi\nLine",,x\n'  # lines 8-9, no address
        'Grace,grace@example.org,"a ""quoted"" word, and a comma"\n'  # line 10
        "Linus,linus@@example.org,\n"  # line 11
    )
    report = run_import(app, write(tmp_path, text))
    assert [(b.line, b.reason.split(":")[0]) for b in report.bad] == [
        (6, 'email "not-an-email"'),
        (8, "no email address"),
        (11, 'email "linus@@example.org"'),
    ]
    assert (report.rows, report.imported, report.blank, report.bad_count) == (5, 2, 2, 3)


def test_an_unterminated_quote_is_a_bad_row_and_the_rest_is_read(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session
) -> None:
    # An opening quote that never closes swallows the rest of the file as one field; the
    # field limit stops it, and the row is reported instead of importing rubbish.
    text = "email,name\nada@example.org,Ada\n" + 'bob@example.org,"Bob\n' + "x" * 140_000 + "\n"
    report = run_import(app, write(tmp_path, text))
    assert report.imported == 1
    assert report.bad_count == 1 and report.bad[0].line == 3
    assert "cannot read this row" in report.bad[0].reason
    assert set(statuses(db_session, lists[0])) == {"ada@example.org"}


def test_delimiters_are_detected(app: Flask, tmp_path: Path, lists: Any) -> None:
    for n, (delimiter, name) in enumerate([(",", "Doe, Jane"), (";", "Doe; Jane"), ("\t", "Doe")]):
        text = f'Email{delimiter}Name\nj{n}@example.org{delimiter}"{name}"\n'
        report = run_import(app, write(tmp_path, text))
        assert (report.imported, report.bad_count) == (1, 0), delimiter
        session = database(app).session()
        assert subscriber(session, f"j{n}@example.org").name == name
        session.close()


def test_export_prefix_is_taken_off(app: Flask, tmp_path: Path, lists: Any) -> None:
    # The export writes '=cmd as "'=cmd" so no spreadsheet runs it; importing it back
    # gives the original name.
    report = run_import(app, write(tmp_path, "email,name\nf@example.org,'=SUM(A1)\n"))
    assert report.imported == 1
    session = database(app).session()
    assert subscriber(session, "f@example.org").name == "=SUM(A1)"
    session.close()


# --- Batches stored at once (lanes) --------------------------------------------------------


def test_lanes_keep_each_address_in_file_order(
    app: Flask, tmp_path: Path, lists: Any, db_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeats of an address many batches apart: the first row wins, a later name fills in."""
    monkeypatch.setattr(imports.importer, "POSTGRES_LANES", 3)
    rows = ["email,name"]
    rows += [f"first{i}@example.org,First {i}" for i in range(30)]
    rows += [f"noname{i}@example.org," for i in range(30)]
    rows += [f"FIRST{i}@example.org,Later {i}" for i in range(30)]
    rows += [f"NoName{i}@example.org,Filled {i}" for i in range(30)]
    path = write(tmp_path, "\n".join(rows) + "\n")
    report = run_import(app, path, batch_size=4)
    assert (report.rows, report.imported, report.merged) == (120, 60, 60)
    names = dict(db_session.execute(sa.select(Subscriber.email, Subscriber.name)).all())
    db_session.commit()
    assert names == {
        **{f"first{i}@example.org": f"First {i}" for i in range(30)},
        **{f"noname{i}@example.org": f"Filled {i}" for i in range(30)},
    }
    assert stored(db_session)[:3] == (60, 60, 60)


def test_a_failing_lane_stops_the_import_and_loses_nothing(
    app: Flask, tmp_path: Path, lists: Any, db_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch fails: the import raises, what was committed stays, a re-run completes it."""
    real = imports.importer.prepare
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports.importer, "prepare", failing)
    path = write(tmp_path, "email\n" + "\n".join(f"p{i}@example.org" for i in range(40)) + "\n")
    with pytest.raises(RuntimeError, match="went away"):
        run_import(app, path, batch_size=4)
    subscribers, subscriptions_, events, _ = stored(db_session)
    assert subscribers == subscriptions_ == events
    assert 0 < subscribers < 40
    monkeypatch.setattr(imports.importer, "prepare", real)
    again = run_import(app, path, batch_size=4)
    assert (again.imported, again.merged) == (40 - subscribers, subscribers)
    assert stored(db_session)[:3] == (40, 40, 40)


def test_lanes_only_for_consented_imports_into_postgresql(app: Flask, lists: Any) -> None:
    importer = imports.importer.Importer(
        database(app),
        "weekly",
        mode=ImportMode.CONSENTED,
        mailer=MemoryMailer(),
        config=app.config,
        source_label="x",
        batch_size=10,
        on_batch=None,
    )
    expected = 1 if database(app).is_sqlite else imports.POSTGRES_LANES
    assert importer._lanes() == expected
    importer.mode = ImportMode.DOUBLE_OPT_IN
    assert importer._lanes() == 1


# --- Double opt-in ---------------------------------------------------------------------


class CommittedCheckingMailer(MemoryMailer):
    """Records messages, checking that each recipient's pending subscription is committed."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app
        self.seen_committed: list[bool] = []

    def send(self, message: Any) -> str:
        with database(self.app).session() as other:  # another connection: committed data only
            status = other.scalar(
                sa.select(Subscription.status)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscriber.email == message.recipient.lower())
            )
            other.rollback()
        self.seen_committed.append(status is S.PENDING)
        return super().send(message)


def test_double_opt_in_pending_and_emailed_after_commit(
    app: Flask,
    tmp_path: Path,
    lists: tuple[MailingList, MailingList],
    make_subscriber: Callable[..., Subscription],
    db_session: so.Session,
    clock: Any,
) -> None:
    weekly, monthly = lists
    make_subscriber(weekly, "old@example.org")
    make_subscriber(weekly, "left@example.org", status=S.UNSUBSCRIBED)
    # Three confirmation emails today already (signing up to another list): capped.
    capped = make_subscriber(monthly, "capped@example.org", status=S.PENDING)
    for hours in (1, 2, 3):
        db_session.add(
            ConfirmationEmail(
                subscriber_id=capped.subscriber_id,
                list_id=monthly.id,
                sent_at=clock.current - timedelta(hours=hours),
            )
        )
    db_session.commit()
    new = [f"new{i}@example.org" for i in range(5)]
    rows = [*new, "old@example.org", "left@example.org", "capped@example.org", "NEW0@example.org"]
    path = write(tmp_path, "email\n" + "\n".join(rows) + "\n")
    mailer = CommittedCheckingMailer(app)

    report = run_import(app, path, mode=ImportMode.DOUBLE_OPT_IN, mailer=mailer, batch_size=3)

    assert (report.rows, report.imported, report.confirmations) == (9, 6, 5)
    assert (report.merged, report.refused, report.bad_count) == (2, 1, 0)
    assert sorted(m.recipient for m in mailer.messages) == new
    assert mailer.seen_committed == [True] * 5
    assert all("confirm" in m.mime["Subject"].lower() for m in mailer.messages)
    found = statuses(db_session, weekly)
    assert {email: found[email] for email in [*new, "capped@example.org"]} == dict.fromkeys(
        [*new, "capped@example.org"], S.PENDING
    )
    assert found["old@example.org"] is S.ACTIVE and found["left@example.org"] is S.UNSUBSCRIBED
    sub = db_session.scalar(
        sa.select(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.email == "new0@example.org", Subscription.list_id == weekly.id)
    )
    assert (sub.source, sub.consent_form, sub.confirmed_at) == ("import", "import", None)
    capped_emails = db_session.scalar(
        sa.select(sa.func.count(ConfirmationEmail.id)).where(
            ConfirmationEmail.subscriber_id == capped.subscriber_id
        )
    )
    assert capped_emails == 3  # no fourth within 24 hours
    db_session.commit()

    # Again: the pending ones are merged, and nobody gets a second email.
    again = run_import(app, path, mode=ImportMode.DOUBLE_OPT_IN, mailer=mailer, batch_size=3)
    assert (again.imported, again.confirmations, again.merged, again.refused) == (0, 0, 8, 1)
    assert len(mailer.messages) == 5


def test_double_opt_in_failed_batch_sends_nothing(
    app: Flask,
    tmp_path: Path,
    lists: tuple[MailingList, MailingList],
    db_session: so.Session,
    monkeypatch: pytest.MonkeyPatch,
    outbox: MemoryMailer,
) -> None:
    real = subscriptions.request_confirmation
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(subscriptions, "request_confirmation", failing)
    path = write(tmp_path, "email\n" + "\n".join(f"p{i}@example.org" for i in range(6)) + "\n")
    with pytest.raises(RuntimeError):
        run_import(app, path, mode=ImportMode.DOUBLE_OPT_IN, batch_size=3)
    # The first batch committed and was emailed; the second rolled back whole, unsent.
    assert sorted(m.recipient for m in outbox.messages) == [f"p{i}@example.org" for i in range(3)]
    assert set(statuses(db_session, lists[0])) == {f"p{i}@example.org" for i in range(3)}


# --- Column mapping --------------------------------------------------------------------


MAPPED = "Work mail,Private mail,Nick\nada@work.example,ada@home.example,Countess\n"


@pytest.mark.parametrize(
    ("email_column", "name_column", "address", "name"),
    [
        ("Work mail", "Nick", "ada@work.example", "Countess"),
        ("private mail", None, "ada@home.example", None),  # case does not matter
        ("Private mail", "nick", "ada@home.example", "Countess"),
    ],
)
def test_column_mapping(
    app: Flask,
    tmp_path: Path,
    lists: Any,
    db_session: so.Session,
    email_column: str,
    name_column: str | None,
    address: str,
    name: str | None,
) -> None:
    report = run_import(
        app, write(tmp_path, MAPPED), email_column=email_column, name_column=name_column
    )
    assert report.imported == 1
    assert report.email_column.casefold() == email_column.casefold()
    assert set(statuses(db_session, lists[0])) == {address}
    assert subscriber(db_session, address).name == name


def test_detect_columns() -> None:
    assert imports.detect_columns(["Name", "E-Mail Address", "x"]) == ("E-Mail Address", "Name")
    assert imports.detect_columns(["first_name", "mail"]) == ("mail", "first_name")
    assert imports.detect_columns(["a", "b"]) == (None, None)


def test_read_columns_leaves_the_stream_where_it_was(tmp_path: Path) -> None:
    stream = io.BytesIO("\ufeffe-mail;Full Name\nx@example.org;X\n".encode())
    assert imports.read_columns(stream) == ["e-mail", "Full Name"]
    assert stream.tell() == 0
    assert imports.read_columns(write(tmp_path, "a,b\n")) == ["a", "b"]


# --- Files that cannot be imported -----------------------------------------------------

OVERLONG = "email,name\n" + "".join(f"o{i}@example.org,O\n" for i in range(50))
OVERLONG += "long@example.org," + "y" * (imports.MAX_LINE_BYTES + 10) + "\n"


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        pytest.param(b"", {}, "the file is empty", id="empty"),
        pytest.param(b"\n\n  \n", {}, "the file is empty", id="only-blank-lines"),
        pytest.param(
            b"name,phone\nAda,123\n",
            {},
            'no email column found: the columns are "name", "phone"',
            id="no-email-column",
        ),
        pytest.param(
            b"ada@example.org,Ada\nbob@example.org,Bob\n",
            {},
            "The first line must be a header",
            id="no-header",
        ),
        pytest.param(
            "email,name\nok@example.org,Ok\nbad@example.org,Ren\xe9\n".encode("latin-1"),
            {},
            "line 3: the file is not UTF-8 text (byte 0xe9 at column 20)",
            id="not-utf8",
        ),
        pytest.param(
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
            {},
            "this is a spreadsheet workbook (Excel, Numbers or LibreOffice), not a CSV file",
            id="xlsx-workbook",
        ),
        pytest.param(b"email,name\n", {}, "no rows to import", id="header-only"),
        pytest.param(b"email,name\n\n\n", {}, "no rows to import", id="header-and-blanks"),
        pytest.param(OVERLONG.encode(), {}, "line 52 is longer than 1024 KiB", id="overlong-line"),
        pytest.param(
            b"email\nx@example.org\n",
            {"email_column": "Mail"},
            "there is no email column 'Mail' in the file; its columns are \"email\"",
            id="unknown-email-column",
        ),
        pytest.param(
            b"email\nx@example.org\n",
            {"name_column": "Nom"},
            "there is no name column 'Nom'",
            id="unknown-name-column",
        ),
    ],
)
def test_bad_files_are_refused_whole(
    app: Flask,
    tmp_path: Path,
    lists: Any,
    db_session: so.Session,
    content: bytes,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    before = stored(db_session)
    with pytest.raises(ImportFileError) as caught:
        run_import(app, write(tmp_path, content), **kwargs)
    assert message in str(caught.value)
    assert stored(db_session) == before


def test_missing_file_and_unknown_list(app: Flask, tmp_path: Path, lists: Any) -> None:
    with pytest.raises(ImportFileError, match="no such file"):
        run_import(app, tmp_path / "nowhere.csv")
    with pytest.raises(NotFound, match="There is no list 'nope'"):
        run_import(app, write(tmp_path, "email\nx@example.org\n"), slug="nope")


def test_not_utf8_from_a_stream_that_cannot_seek(app: Flask, lists: Any, db_session: Any) -> None:
    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    with pytest.raises(ImportFileError, match="line 2: the file is not UTF-8"):
        run_import(app, Pipe(b"email\n\xff@example.org\n"))
    assert stored(db_session) == (0, 0, 0, 0)


# --- The command line ------------------------------------------------------------------


def test_cli_import_consented(
    runner: Callable[..., Any], tmp_path: Path, lists: Any, db_session: so.Session
) -> None:
    rows = ["email;name", "ada@example.org;Ada", "ADA@example.org;", "bad-address;B", "", "x@y"]
    path = write(tmp_path, "\n".join(rows) + "\n", name="members.csv")
    result = runner("subscribers", "import", str(path), "--list", "weekly", "--consented")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Imported members.csv into weekly:",
        "  rows read:                  4",
        "  imported:                   1  (new subscriptions, active)",
        "  confirmations sent:         0",
        "  merged:                     1  (already on the list, or repeated in the file)",
        "  refused:                    0  (unsubscribed, bounced, complained or suppressed)",
        "  blank lines:                1",
        "  bad rows:                   2  (not imported, see below)",
        "Bad rows:",
        '  line 4: email "bad-address": An email address must have an @-sign.',
        '  line 6: email "x@y": The part after the @-sign is not valid. It should have a period.',
    ]
    sub = db_session.scalar(sa.select(Subscription))
    assert (sub.status, sub.consent_form) == (S.ACTIVE, "import: members.csv")


def test_cli_import_double_opt_in_and_many_bad_rows(
    runner: Callable[..., Any], tmp_path: Path, lists: Any, outbox: MemoryMailer
) -> None:
    lines = ["Email Address,First Name", "zoe@example.org,Zoë"] + [f"bad{i}" for i in range(25)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = runner(
        "subscribers", "import", str(path), "--list", "weekly", "--email-column", "email address"
    )
    assert result.exit_code == 0, result.output
    assert "imported:                   1  (new subscriptions, pending until confirmed)" in (
        result.stdout
    )
    assert "confirmations sent:         1" in result.stdout
    assert "  line 3: " in result.stdout and "  line 22: " in result.stdout
    assert "  line 23: " not in result.stdout
    assert result.stdout.rstrip().endswith("... and 5 more")
    assert [m.recipient for m in outbox.messages] == ["zoe@example.org"]


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--list", "nope"], "email\nx@example.org\n", "Error: There is no list 'nope'."),
        (
            ["--list", "weekly", "--email-column", "mail"],
            "email\nx@example.org\n",
            "Error: there is no email column 'mail' in the file; its columns are \"email\"",
        ),
        (["--list", "weekly"], "name\nAda\n", "Error: no email column found"),
        (["--list", "weekly"], "email\n", "Error: the file has no rows to import"),
    ],
)
def test_cli_errors_are_one_line(
    runner: Callable[..., Any],
    tmp_path: Path,
    lists: Any,
    db_session: so.Session,
    args: list[str],
    content: str,
    message: str,
) -> None:
    result = runner("subscribers", "import", str(write(tmp_path, content)), *args)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert stored(db_session) == (0, 0, 0, 0)


def test_cli_missing_file(runner: Callable[..., Any], tmp_path: Path, lists: Any) -> None:
    result = runner("subscribers", "import", str(tmp_path / "gone.csv"), "--list", "weekly")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'gone.csv'}: no such file"


def test_cli_help_explains_consent(runner: Callable[..., Any]) -> None:
    result = runner("subscribers", "import", "--help")
    assert result.exit_code == 0
    assert "--consented" in result.output and "confirmation link" in result.output


# --- Background jobs (the console) -----------------------------------------------------


def make_job(app: Flask, path: Path, mode: ImportMode = ImportMode.CONSENTED, **kw: Any) -> int:
    with database(app).transaction() as session:
        mailing_list = session.scalar(sa.select(MailingList).where(MailingList.slug == "weekly"))
        job = imports.create_job(
            session,
            mailing_list,
            kw.pop("filename", "upload.csv"),
            mode,
            kw.pop("email_column", None),
            kw.pop("name_column", None),
            path.stat().st_size if path.exists() else 0,
        )
        assert job.status is ImportStatus.QUEUED
        return job.id


def run(app: Flask, job_id: int, path: Path, **kwargs: Any) -> None:
    imports.run_job(
        database(app),
        job_id,
        path,
        mailer=app.extensions["newsletter.mailer"],
        config=app.config,
        **kwargs,
    )


def test_run_job_records_the_report(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session, outbox: MemoryMailer
) -> None:
    rows = (
        ["Mail;Nom"]
        + [f"j{i}@example.org;J {i}" for i in range(30)]
        + ["oops;X", "j1@example.org;"]
    )
    path = write(tmp_path, "\n".join(rows) + "\n")
    job_id = make_job(
        app, path, ImportMode.DOUBLE_OPT_IN, filename="from-mailchimp.csv", name_column="nom"
    )

    run(app, job_id, path, batch_size=10)

    job = db_session.get(ImportJob, job_id)
    db_session.refresh(job)
    assert job.status is ImportStatus.DONE and job.error is None
    assert (job.rows, job.imported, job.confirmations, job.merged, job.refused) == (
        32,
        30,
        30,
        1,
        0,
    )
    assert (job.blank, job.bad_count) == (0, 1)
    assert imports.bad_rows(job) == [
        BadRow(32, 'email "oops": An email address must have an @-sign.')
    ]
    assert (job.email_column, job.name_column) == ("Mail", "Nom")
    assert job.bytes_done == job.bytes_total == path.stat().st_size
    assert job.started_at is not None and job.finished_at >= job.started_at
    assert len(outbox.messages) == 30
    sub = db_session.scalar(sa.select(Subscription).limit(1))
    assert sub.consent_form == "import: from-mailchimp.csv"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "no such file"),
        (b"email\nok@example.org\n\xff\n", "line 3: the file is not UTF-8 text"),
        (b"phone\n123\n", "no email column found"),
    ],
)
def test_run_job_failure_is_recorded(
    app: Flask,
    tmp_path: Path,
    lists: Any,
    db_session: so.Session,
    content: bytes | None,
    error: str,
) -> None:
    path = tmp_path / "upload.csv"
    if content is not None:
        path.write_bytes(content)
    job_id = make_job(app, path)
    run(app, job_id, path)
    job = db_session.get(ImportJob, job_id)
    assert job.status is ImportStatus.FAILED
    assert error in job.error
    assert job.finished_at is not None
    assert stored(db_session) == (0, 0, 0, 0)


def test_run_job_unexpected_error_is_recorded(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session, monkeypatch: Any
) -> None:
    path = write(tmp_path, "email\n" + "".join(f"u{i}@example.org\n" for i in range(5)))
    job_id = make_job(app, path)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(imports.importer, "subscribe_consented", broken)
    run(app, job_id, path)
    job = db_session.get(ImportJob, job_id)
    assert job.status is ImportStatus.FAILED
    assert job.error == "unexpected error: disk on fire"
    assert job.imported == 0


def test_a_stalled_job_is_failed_when_next_looked_at(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session, clock: Any
) -> None:
    # The process that ran these died: nothing touches their rows any more.
    queued = make_job(app, tmp_path / "a.csv")
    running = make_job(app, tmp_path / "b.csv")
    db_session.get(ImportJob, running).status = ImportStatus.RUNNING
    db_session.commit()
    clock.advance(seconds=imports.JOB_STALE_AFTER.total_seconds() - 1)
    assert imports.get_job(db_session, running).status is ImportStatus.RUNNING
    assert [j.status for j in imports.recent_jobs(db_session)] == [
        ImportStatus.RUNNING,
        ImportStatus.QUEUED,
    ]
    assert not db_session.dirty

    clock.advance(seconds=2)
    job = imports.get_job(db_session, running)
    assert job.status is ImportStatus.FAILED
    assert job.error == imports.STALLED_JOB_ERROR
    assert job.finished_at == clock.current
    assert [j.id for j in imports.recent_jobs(db_session) if j.status is ImportStatus.FAILED] == [
        running,
        queued,
    ]
    db_session.commit()
    db_session.expire_all()
    assert db_session.get(ImportJob, queued).status is ImportStatus.FAILED


def test_finished_jobs_never_stall(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session, clock: Any
) -> None:
    path = write(tmp_path, "email\nok@example.org\n")
    job_id = make_job(app, path)
    run(app, job_id, path)
    clock.advance(days=30)
    job = imports.get_job(db_session, job_id)
    assert (job.status, job.error) == (ImportStatus.DONE, None)


def test_the_heartbeat_touches_a_job_while_no_batch_ends(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session, monkeypatch: Any
) -> None:
    # One batch whose confirmations go out slowly (after its commit, at the sending
    # rate): the job's row must still be touched, or the console would think its
    # process gone.
    monkeypatch.setattr(imports.jobs, "JOB_HEARTBEAT", 0.05)
    path = write(tmp_path, "email\n" + "".join(f"h{i}@example.org\n" for i in range(3)))
    job_id = make_job(app, path, ImportMode.DOUBLE_OPT_IN)
    touched: list[datetime] = []

    class SlowMailer(MemoryMailer):
        def send(self, message: Any) -> str:
            deadline = time.monotonic() + 2
            seen = len(set(touched))
            while len(set(touched)) == seen and time.monotonic() < deadline:
                time.sleep(0.02)
                with database(app).transaction() as session:
                    touched.append(session.get(ImportJob, job_id).updated_at)
            return super().send(message)

    mailer = SlowMailer()
    imports.run_job(database(app), job_id, path, mailer=mailer, config=app.config)
    assert len(mailer.messages) == 3
    # Each email waited for a new time on the row; no progress is written during a
    # batch, so the second and third came from the heartbeat.
    assert len(set(touched)) == 3, touched
    job = db_session.get(ImportJob, job_id)
    assert (job.status, job.confirmations) == (ImportStatus.DONE, 3)
    # Stopped with the job: no thread is left behind to touch it again.
    assert not [t for t in threading.enumerate() if t.name == f"import-{job_id}-heartbeat"]


def test_run_job_unknown_job(app: Flask, tmp_path: Path) -> None:
    with pytest.raises(NewsletterError, match="there is no import job 999"):
        run(app, 999, tmp_path / "x.csv")


@pytest.mark.parametrize(
    ("text", "bad_line", "words", "imported"),
    [
        # At the end of the file: was imported as "unterminated" (and greeted "Hi unterminated,").
        ('email,name\nada@example.org,Ada\nbob@example.org,"unterminated\n', 3, "never closed", 1),
        # In the middle, closed lines later: the swallowed lines are named, the rest is read.
        (
            'email,name\nbob@example.org,"Bob\ncarl@example.org,Carl\ndan@example.org,Dan"x\n'
            "ada@example.org,Ada\n",
            2,
            "lines 2-4 were read as one row",
            1,
        ),
    ],
)
def test_an_unclosed_quote_is_reported_not_imported(
    app: Flask, tmp_path: Path, lists: Any, db_session: so.Session, text, bad_line, words, imported
) -> None:
    report = run_import(app, write(tmp_path, text))
    assert report.imported == imported
    assert [b.line for b in report.bad] == [bad_line]
    assert words in report.bad[0].reason and "not imported" in report.bad[0].reason
    assert set(statuses(db_session, lists[0])) == {"ada@example.org"}
