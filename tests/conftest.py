"""Shared fixtures: app, client, runner, db session, outbox, clock, factories, real servers.

Every test that uses `app` runs on SQLite and on PostgreSQL. Set
NEWSLETTER_TEST_BACKENDS=sqlite for a quick local run; CI runs both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner
from flask import Flask

from newsletter import clock as clock_module
from newsletter import create_app
from newsletter import migrations
from newsletter.addresses import address_key
from newsletter.cli import CliState
from newsletter.cli import main as cli_main
from newsletter.db import Base
from newsletter.db import make_engine
from newsletter.mail import MemoryMailer
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
BASE_URL = "https://news.example.com"
SECRET_KEY = "test-secret-key-0123456789abcdef"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# One test database per checkout (named after its path): two clones tested at once on one
# machine would otherwise truncate each other's tables mid-test.
PG_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_test_"
    + hashlib.sha1(str(ROOT).encode()).hexdigest()[:10],
)
BACKENDS = [
    b.strip()
    for b in os.environ.get("NEWSLETTER_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


# --- No network beyond loopback -------------------------------------------------------

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        if host not in {"localhost", "::1"} and not str(host).startswith("127."):
            raise RuntimeError(f"tests may not reach {host}: only loopback is allowed")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that calls newsletter.logs.configure."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = {handler: list(handler.filters) for handler in handlers}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for handler, kept in filters.items():
        handler.filters[:] = kept


# --- Databases --------------------------------------------------------------------------


def _postgres_ready(url: str) -> str | None:
    """Create the test database if needed; return None when ready, else the reason."""
    database = sa.engine.make_url(url).database
    admin = make_engine(str(sa.engine.make_url(url).set(database="postgres")))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": database}
            )
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    except sa.exc.OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        admin.dispose()
    return None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    engine.dispose()
    return path


# How long a test run waits for another run of the same checkout to finish with the
# PostgreSQL test database before it gives up.
PG_BUSY_WAIT = 900.0
TEST_RUN_LOCK = 0x6E6C


def _hold_test_database(conn: sa.Connection, say: Callable[[str], None]) -> None:
    """Take the test database for this run (a session-level advisory lock, released when
    the connection closes, even if the run is killed): two runs of one checkout at once
    truncate each other's tables mid-test, which looks like flaky workers."""
    deadline = time.monotonic() + PG_BUSY_WAIT
    told = False
    # The two-key form: its own key space, apart from the workers' one-key recovery lock.
    key = {"run": TEST_RUN_LOCK}
    taken = "SELECT pg_try_advisory_lock(:run, hashtext(current_database()))"
    while not conn.scalar(sa.text(taken), key):
        holder = conn.scalar(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :run AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            key,
        )
        if time.monotonic() > deadline:
            pytest.fail(
                f"another test run (PostgreSQL backend {holder}) has held {PG_URL} for "
                f"{PG_BUSY_WAIT:g} s; stop it, or set NEWSLETTER_TEST_POSTGRES_URL"
            )
        if not told:
            say(f"waiting for another test run (PostgreSQL backend {holder}) to end: {PG_URL}")
            told = True
        conn.commit()
        time.sleep(1.0)
    conn.commit()  # the lock outlives the transaction: the connection is idle, locks nothing


def _tell(config: pytest.Config, line: str) -> None:
    """Write a line on the terminal now (output is captured while fixtures set up)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def postgres_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """The migrated PostgreSQL test database's URL, held by this run until it ends."""
    reason = _postgres_ready(PG_URL)
    if reason:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(f"PostgreSQL not reachable ({reason}); .ci/run starts it")
    engine = make_engine(PG_URL)
    guard = engine.connect()
    try:
        _hold_test_database(guard, lambda line: _tell(pytestconfig, line))
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        migrations.upgrade(engine)
        yield PG_URL
    finally:
        guard.close()
        engine.dispose()


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database: a fresh SQLite file, or the emptied PostgreSQL one."""
    if request.param == "sqlite":
        path = tmp_path / "newsletter.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    return url


# --- Application ------------------------------------------------------------------------


@pytest.fixture
def outbox() -> MemoryMailer:
    """Messages the app sent, in order (the app's mail backend in tests)."""
    return MemoryMailer()


@pytest.fixture
def app_config(database_url: str, tmp_path: Path, outbox: MemoryMailer) -> dict[str, Any]:
    """The settings `app` is built from; tests may change them before using `app`."""
    return {
        "TESTING": True,
        "ENV": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "BASE_URL": BASE_URL,
        "MAIL_BACKEND": "memory",
        "MAILER": outbox,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "WTF_CSRF_ENABLED": True,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """The application on a clean database with an in-memory mail backend."""
    application = create_app(app_config)
    yield application
    application.extensions["newsletter.db"].dispose()


@pytest.fixture
def client(app: Flask):
    """A test client for the app."""
    return app.test_client()


class CliResult:
    def __init__(self, result: Any) -> None:
        self.exit_code = result.exit_code
        self.output = result.output
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception


@pytest.fixture
def runner(app: Flask) -> Callable[..., CliResult]:
    """Run a `newsletter` command against the test app: runner("lists", "create", ...)."""

    def invoke(*args: str, input: str | None = None) -> CliResult:
        result = CliRunner().invoke(cli_main, list(args), obj=CliState(app), input=input)
        return CliResult(result)

    return invoke


@pytest.fixture
def db_session(app: Flask) -> Iterator[so.Session]:
    """A session on the test database; tests commit what they set up."""
    session = app.extensions["newsletter.db"].session()
    yield session
    session.rollback()
    session.close()


class Clock:
    """A controllable clock: starts at a fixed instant and moves only when told."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current


@pytest.fixture
def clock() -> Iterator[Clock]:
    """Freeze newsletter.clock at 2026-03-02 09:00 UTC; `clock.advance(days=1)` moves it."""
    fake = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    clock_module.set_source(fake)
    yield fake
    clock_module.set_source(None)


# --- Factories --------------------------------------------------------------------------


@pytest.fixture
def make_list(db_session: so.Session) -> Callable[..., MailingList]:
    """Create and commit a list: make_list(slug="weekly", name=..., ...)."""

    def _make(**overrides: Any) -> MailingList:
        values = {
            "slug": "weekly",
            "name": "o11y weekly",
            "from_address": "news@example.com",
            "postal_address": "1 Example Street, 10115 Berlin, Germany",
        }
        values.update(overrides)
        mailing_list = MailingList(**values)
        db_session.add(mailing_list)
        db_session.commit()
        return mailing_list

    return _make


@pytest.fixture
def make_subscriber(db_session: so.Session) -> Callable[..., Subscription]:
    """Create and commit a subscription: make_subscriber(mailing_list, email=..., status=...)."""
    counter = iter(range(1, 10**9))

    def _make(
        mailing_list: MailingList,
        email: str | None = None,
        name: str | None = "René Luçon",
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
        **overrides: Any,
    ) -> Subscription:
        email = email or f"reader{next(counter)}@example.com"
        key = address_key(email)
        subscriber = db_session.scalar(sa.select(Subscriber).where(Subscriber.email == key))
        if subscriber is None:
            subscriber = Subscriber(email=key, display_email=email, name=name)
            db_session.add(subscriber)
            db_session.flush()
        now = clock_module.now()
        values: dict[str, Any] = {
            "subscriber_id": subscriber.id,
            "list_id": mailing_list.id,
            "status": status,
            "source": "form",
            "consent_at": now,
            "consent_ip": "192.0.2.1",
            "consent_form": "test",
            "confirmed_at": now if status is SubscriptionStatus.ACTIVE else None,
        }
        values.update(overrides)
        subscription = Subscription(**values)
        db_session.add(subscription)
        db_session.commit()
        return subscription

    return _make


# --- Real servers on loopback -----------------------------------------------------------


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real SES-compatible HTTP server (moto in server mode); yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto_ses(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoSes]:
    """moto reset, with dummy credentials and the sender domain verified."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ses = MotoSes(moto_server)
    ses.reset()
    ses.verify("example.com")
    yield ses
    ses.reset()


class MotoSes:
    """Talk to the moto server: verify identities, read back sent raw messages."""

    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "sesv2",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def verify(self, identity: str) -> None:
        self.client().create_email_identity(EmailIdentity=identity)

    def sent_messages(self) -> list[dict[str, Any]]:
        """Return every raw message moto received: {id, source, destinations, raw_data}."""
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/moto-api/data.json") as response:
            data = json.load(response)
        return list(data.get("ses", {}).get("RawMessage", []))


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """Serve the app over real HTTP on loopback in a thread; yields the base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


# --- Browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page; a screenshot is kept in test-artifacts/ after the test."""
    context = browser.new_context()
    tab = context.new_page()
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    try:
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()


# --- bounces branch: signed SNS posts and ledger rows -------------------------------------


@pytest.fixture(scope="session")
def sns_signer() -> Any:
    """A test RSA key and self-signed certificate that sign SNS messages (v1 and v2)."""
    from sns_fixtures import SnsSigner

    return SnsSigner.create()


class SnsHarness:
    """The app's SNS gateway wired to the test certificate; records confirmation visits."""

    def __init__(self, app: Flask, signer: Any) -> None:
        from sns_fixtures import TOPIC_ARN

        from newsletter.sns import CertificateStore
        from newsletter.sns import SnsGateway

        self.signer = signer
        self.visited: list[str] = []
        self.fetched: list[str] = []

        def fetch(url: str) -> bytes:
            self.fetched.append(url)
            return signer.fetch(url)

        def open_url(url: str) -> bytes:
            self.visited.append(url)
            return b"<ConfirmSubscriptionResponse/>"

        app.extensions["newsletter.sns"] = SnsGateway(
            topic_arns=frozenset({TOPIC_ARN}),
            certificates=CertificateStore(fetch=fetch),
            open_url=open_url,
        )


@pytest.fixture
def sns(app: Flask, sns_signer: Any) -> SnsHarness:
    """Make the app accept SNS posts signed with the test certificate on the test topic."""
    return SnsHarness(app, sns_signer)


@pytest.fixture
def start_issue(
    app: Flask, db_session: so.Session, make_list: Callable[..., MailingList], make_subscriber: Any
) -> Callable[..., Any]:
    """Start sending tests/data/sending-issue.yaml to a new list of `readers` active readers
    (committed, queued for a worker); return the Issue."""
    from newsletter import sending

    issue_file = Path(__file__).parent / "data" / "sending-issue.yaml"

    def _start(readers: int = 1) -> Any:
        mailing_list = make_list()
        for _ in range(readers):
            make_subscriber(mailing_list)
        plan = sending.plan_send(
            db_session, issue_file, mailing_list.slug, base_url=app.config["BASE_URL"]
        )
        issue = sending.start_send(db_session, plan)
        db_session.commit()
        return issue

    return _start


@pytest.fixture
def make_ledger(db_session: so.Session, make_list: Callable[..., MailingList]) -> Callable:
    """Create an issue with one `sent` ledger row per address: make_ledger(["a@x.org", ...])."""
    from newsletter.models import Delivery
    from newsletter.models import DeliveryStatus
    from newsletter.models import Issue
    from newsletter.models import IssueStatus

    counter = iter(range(1, 10**6))

    def _make(
        emails: list[str],
        status: DeliveryStatus = DeliveryStatus.SENT,
        mailing_list: MailingList | None = None,
    ) -> tuple[Issue, list[Any]]:
        n = next(counter)
        mailing_list = mailing_list or db_session.scalar(sa.select(MailingList)) or make_list()
        issue = Issue(
            list_id=mailing_list.id,
            slug=f"issue-{n}",
            title=f"Issue {n}",
            subject=f"Issue {n}",
            issue_date=clock_module.now(),
            status=IssueStatus.SENT,
            source_yaml="title: x",
            compiled_html="<p>x</p>",
            compiled_text="x",
        )
        db_session.add(issue)
        db_session.flush()
        rows = []
        for email in emails:
            subscriber = db_session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
            if subscriber is None:
                subscriber = Subscriber(email=email, display_email=email, name=None)
                db_session.add(subscriber)
                db_session.flush()
            subscription = db_session.scalar(
                sa.select(Subscription).where(
                    Subscription.subscriber_id == subscriber.id,
                    Subscription.list_id == mailing_list.id,
                )
            )
            if subscription is None:
                subscription = Subscription(
                    subscriber_id=subscriber.id,
                    list_id=mailing_list.id,
                    status=SubscriptionStatus.ACTIVE,
                    source="import",
                    confirmed_at=clock_module.now(),
                )
                db_session.add(subscription)
                db_session.flush()
            sent = status is DeliveryStatus.SENT
            row = Delivery(
                issue_id=issue.id,
                subscriber_id=subscriber.id,
                subscription_id=subscription.id,
                status=status,
                attempts=1,
                sent_at=clock_module.now() if sent else None,
                ses_message_id=f"0100018e-{issue.id}-{subscriber.id}-000000" if sent else None,
            )
            db_session.add(row)
            rows.append(row)
        db_session.commit()
        return issue, rows

    return _make


# --- The editors' console ---------------------------------------------------------------

EDITOR_EMAIL = "editor@example.com"
EDITOR_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def editor_password_hash() -> str:
    """The argon2id hash of EDITOR_PASSWORD, computed once (hashing is slow on purpose)."""
    from newsletter.accounts import _hasher

    return _hasher().hash(EDITOR_PASSWORD)


@pytest.fixture
def make_editor(db_session: so.Session, editor_password_hash: str) -> Callable[..., Any]:
    """Create and commit an editor account: make_editor(email=...) (password EDITOR_PASSWORD)."""
    from newsletter.models import User

    def _make(email: str = EDITOR_EMAIL) -> User:
        user = User(email=email, password_hash=editor_password_hash)
        db_session.add(user)
        db_session.commit()
        return user

    return _make


@pytest.fixture
def editor(make_editor: Callable[..., Any]) -> Any:
    """The default editor account (EDITOR_EMAIL / EDITOR_PASSWORD)."""
    return make_editor()


def csrf_token_from(html: str) -> str:
    """Return the first CSRF token in a page."""
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: Any, email: str = EDITOR_EMAIL, password: str = EDITOR_PASSWORD) -> Any:
    """Sign a test client in through the login form; return the response."""
    page = client.get("/admin/login")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post(
        "/admin/login", data={"email": email, "password": password, "csrf_token": token}
    )


@pytest.fixture
def admin_client(client: Any, editor: Any) -> Any:
    """A test client signed in as the default editor; `admin_client.csrf()` gives a token."""
    response = login(client)
    assert response.status_code == 302, response.get_data(as_text=True)

    def csrf() -> str:
        return csrf_token_from(client.get("/admin/").get_data(as_text=True))

    client.csrf = csrf
    return client
