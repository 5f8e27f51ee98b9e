"""The console's gate: accounts, login, logout, sessions, CSRF and the access-control table."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from newsletter import accounts
from newsletter import create_app
from newsletter.models import User
from tests.conftest import BASE_URL
from tests.conftest import EDITOR_EMAIL
from tests.conftest import EDITOR_PASSWORD
from tests.conftest import SECRET_KEY
from tests.conftest import csrf_token_from
from tests.conftest import login

# Endpoints the table below must find (a route dropped by mistake fails the test).
EXPECTED_ENDPOINTS = {
    "admin.dashboard",
    "admin.subscribers",
    "admin.import_form",
    "admin.issues",
    "admin.lists",
    "admin.list_new",
    "admin.list_edit",
    "admin.logout",
}
ARGUMENT_VALUES = {"int": "1", "default": "x", "string": "x", "path": "x"}


def _admin_rules(app: Flask) -> list[Any]:
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin.") and rule.endpoint != "admin.login"
    ]


def _url(rule: Any) -> str:
    """The rule's URL with a placeholder value for each argument."""

    def value(match: re.Match[str]) -> str:
        converter = match.group(1) or "default"
        return ARGUMENT_VALUES.get(converter, "x")

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", value, rule.rule)


def _cases(app_factory: Any) -> list[tuple[str, str]]:
    app = app_factory()
    cases = []
    for rule in _admin_rules(app):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            cases.append((method, _url(rule)))
    return cases


def _session_cookie(client: Any) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return cookie.value


# --- The access-control table -----------------------------------------------------------


def test_every_admin_route_needs_a_login(app: Flask, client: Any) -> None:
    rules = _admin_rules(app)
    assert EXPECTED_ENDPOINTS <= {rule.endpoint for rule in rules}
    checked = 0
    for rule in rules:
        url = _url(rule)
        if "GET" in rule.methods:
            response = client.get(url)
            assert response.status_code == 302, (url, response.status_code)
            location = response.headers["Location"]
            assert location.startswith("/admin/login"), (url, location)
            checked += 1
        if "POST" in rule.methods:
            # No session and no token: refused before any view runs.
            response = client.post(url, data={})
            assert response.status_code == 400, (url, response.status_code)
            checked += 1
    assert checked >= len(EXPECTED_ENDPOINTS)


def test_every_admin_form_needs_a_csrf_token(app: Flask, admin_client: Any) -> None:
    posts = [rule for rule in _admin_rules(app) if "POST" in rule.methods]
    assert {"admin.logout", "admin.list_new", "admin.list_edit"} <= {r.endpoint for r in posts}
    for rule in posts:
        url = _url(rule)
        response = admin_client.post(url, data={"name": "x"})
        assert response.status_code == 400, (url, response.status_code)
        body = response.get_data(as_text=True)
        assert "CSRF" in body or "form expired" in body.lower() or "token" in body.lower(), url
        # A token from another session is no better than none.
        response = admin_client.post(url, data={"csrf_token": "forged.token.value"})
        assert response.status_code == 400, (url, response.status_code)
    # Still signed in: the refusals changed nothing.
    assert admin_client.get("/admin/").status_code == 200


def test_redirect_keeps_the_page_asked_for(client: Any, editor: User) -> None:
    response = client.get("/admin/lists?x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login?next=/admin/lists?x%3D1"
    page = client.get(response.headers["Location"])
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post(
        "/admin/login",
        data={
            "email": EDITOR_EMAIL,
            "password": EDITOR_PASSWORD,
            "csrf_token": token,
            "next": "/admin/lists?x=1",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/lists?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/admin",
        "//evil.example/admin",
        "/\\evil.example",
        "/subscribe",
        "javascript:alert(1)",
        "/admin\\@evil.example",
    ],
)
def test_login_never_redirects_off_the_console(client: Any, editor: User, target: str) -> None:
    page = client.get("/admin/login")
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post(
        "/admin/login",
        data={
            "email": EDITOR_EMAIL,
            "password": EDITOR_PASSWORD,
            "csrf_token": token,
            "next": target,
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def _tamper(value: str) -> str:
    # Flip one character of the payload (before the timestamp and signature).
    index = len(value) // 3
    flipped = "A" if value[index] != "A" else "B"
    return value[:index] + flipped + value[index + 1 :]


def test_tampered_session_cookie_is_rejected(app: Flask, client: Any, make_editor: Any) -> None:
    make_editor(EDITOR_EMAIL)
    other = make_editor("other@example.com")
    assert login(client, "other@example.com").status_code == 302
    cookie = _session_cookie(client)
    assert client.get("/admin/").status_code == 200

    fresh = app.test_client()
    fresh.set_cookie("session", _tamper(cookie))
    response = fresh.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")

    # A cookie re-signed with another key, naming the other editor: rejected too.
    forged = app.test_client()
    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(cookie)
    assert data["admin_uid"] == other.id
    wrong_key = Flask("forger")
    wrong_key.secret_key = "not-the-secret"
    forged_value = app.session_interface.get_signing_serializer(wrong_key).dumps(data)
    forged.set_cookie("session", forged_value)
    assert forged.get("/admin/").status_code == 302


def test_signed_cookie_naming_another_editor_is_rejected(
    app: Flask, client: Any, make_editor: Any
) -> None:
    """Even a correctly signed session cannot be moved to another account (the proof)."""
    first = make_editor(EDITOR_EMAIL)
    other = make_editor("other@example.com")
    assert login(client, "other@example.com").status_code == 302
    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(_session_cookie(client))
    data["admin_uid"] = first.id  # the proof still belongs to `other`
    moved = app.test_client()
    moved.set_cookie("session", serializer.dumps(data))
    assert moved.get("/admin/").status_code == 302
    # The untouched session still works.
    data["admin_uid"] = other.id
    intact = app.test_client()
    intact.set_cookie("session", serializer.dumps(data))
    assert intact.get("/admin/").status_code == 200


# --- Login and logout -------------------------------------------------------------------


def test_login_sets_a_safe_cookie_and_opens_the_console(client: Any, editor: User) -> None:
    response = login(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    page = client.get("/admin/")
    assert page.status_code == 200
    assert EDITOR_EMAIL in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_login_session_is_new_each_time(client: Any, editor: User) -> None:
    client.get("/admin/login")
    before = client.get_cookie("session")
    login(client)
    after = _session_cookie(client)
    assert before is None or before.value != after


def test_cookie_is_secure_in_production(app_config: dict[str, Any], editor: User) -> None:
    production = create_app({**app_config, "TESTING": False})
    try:
        assert production.config["SESSION_COOKIE_SECURE"] is True
        client = production.test_client()
        response = login(client)
        assert response.status_code == 302
        assert "Secure" in response.headers["Set-Cookie"]
    finally:
        production.extensions["newsletter.db"].dispose()


def test_cookie_is_not_secure_in_development(app_config: dict[str, Any]) -> None:
    development = create_app({**app_config, "TESTING": False, "ENV": "development"})
    try:
        assert development.config["SESSION_COOKIE_SECURE"] is False
    finally:
        development.extensions["newsletter.db"].dispose()


@pytest.mark.parametrize(
    ("email", "password"),
    [
        (EDITOR_EMAIL, "wrong password, long enough"),
        ("nobody@example.com", EDITOR_PASSWORD),
        ("not an address", EDITOR_PASSWORD),
        (EDITOR_EMAIL, ""),
        (EDITOR_EMAIL, "x" * 5000),
    ],
)
def test_wrong_credentials_are_refused(
    client: Any, editor: User, db_session: Any, email: str, password: str
) -> None:
    response = login(client, email, password)
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "That address and password do not match an editor account." in body
    assert client.get("/admin/").status_code == 302
    db_session.expire_all()
    assert db_session.get(User, editor.id).last_login_at is None


def test_login_without_csrf_token_is_refused(client: Any, editor: User) -> None:
    response = client.post("/admin/login", data={"email": EDITOR_EMAIL, "password": "x" * 20})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_records_last_login(client: Any, editor: User, db_session: Any, clock: Any) -> None:
    login(client)
    db_session.expire_all()
    assert db_session.get(User, editor.id).last_login_at == clock()


def test_logout_ends_the_session(admin_client: Any) -> None:
    token = admin_client.csrf()
    response = admin_client.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login"
    assert admin_client.get("/admin/").status_code == 302


def test_password_change_ends_open_sessions(admin_client: Any, db_session: Any) -> None:
    user = accounts.find_user(db_session, EDITOR_EMAIL)
    accounts.set_password(db_session, user, "a brand new password")
    db_session.commit()
    assert admin_client.get("/admin/").status_code == 302


def test_deleted_account_ends_open_sessions(admin_client: Any, db_session: Any) -> None:
    db_session.execute(sa.delete(User))
    db_session.commit()
    assert admin_client.get("/admin/").status_code == 302


@pytest.fixture
def tight_limits(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config.update(LOGIN_ACCOUNT_LIMIT=3, LOGIN_IP_LIMIT=5, LOGIN_WINDOW=600)
    return app_config


def test_login_attempts_per_account_are_limited(
    tight_limits: dict[str, Any], client: Any, editor: User, clock: Any
) -> None:
    for _ in range(3):
        assert login(client, EDITOR_EMAIL, "wrong password, long enough").status_code == 401
    # The right password does not get through either once the limit is hit.
    response = login(client)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many login attempts" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    clock.advance(seconds=601)
    assert login(client).status_code == 302


def test_login_attempts_per_ip_are_limited(
    tight_limits: dict[str, Any], client: Any, editor: User
) -> None:
    for number in range(5):
        response = login(client, f"guess{number}@example.com", "wrong password, long enough")
        assert response.status_code == 401
    assert login(client).status_code == 429


def test_login_page_when_signed_in_goes_to_the_console(admin_client: Any) -> None:
    response = admin_client.get("/admin/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


# --- Accounts and `newsletter admin` ----------------------------------------------------


def test_create_user_hashes_with_argon2id(runner: Any, db_session: Any) -> None:
    result = runner(
        "admin",
        "create-user",
        "Editor@Example.COM",
        "--password-stdin",
        input="s3cret pass phrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created editor account editor@example.com" in result.output
    assert f"{BASE_URL}/admin" in result.output
    user = db_session.scalar(sa.select(User))
    assert user.email == "editor@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert "s3cret" not in user.password_hash


def test_create_user_prompts_twice(runner: Any, db_session: Any) -> None:
    result = runner(
        "admin", "create-user", "ed@example.com", input="first password!\nother password!\n"
    )
    assert result.exit_code != 0
    assert db_session.scalar(sa.select(sa.func.count(User.id))) == 0
    db_session.rollback()  # end the read, so the command may write (SQLite)
    result = runner(
        "admin", "create-user", "ed@example.com", input="same password!!\nsame password!!\n"
    )
    assert result.exit_code == 0, result.output
    assert db_session.scalar(sa.select(sa.func.count(User.id))) == 1


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("ed@example.com", "short", "The password must be at least 12 characters."),
        ("not-an-address", "long enough password", "'not-an-address'"),
        (EDITOR_EMAIL, "long enough password", f"An account for {EDITOR_EMAIL} exists already."),
    ],
)
def test_create_user_bad_input(
    runner: Any, editor: User, db_session: Any, email: str, password: str, message: str
) -> None:
    result = runner("admin", "create-user", email, "--password-stdin", input=password + "\n")
    assert result.exit_code == 1
    assert message in result.output
    assert db_session.scalar(sa.select(sa.func.count(User.id))) == 1


def test_set_password_and_users(runner: Any, editor: User, client: Any) -> None:
    result = runner(
        "admin", "set-password", EDITOR_EMAIL, "--password-stdin", input="another fine password\n"
    )
    assert result.exit_code == 0, result.output
    assert login(client).status_code == 401
    assert login(client, EDITOR_EMAIL, "another fine password").status_code == 302
    listing = runner("admin", "users")
    assert listing.exit_code == 0
    assert re.search(rf"{re.escape(EDITOR_EMAIL)}\tlast sign-in: \d{{4}}-", listing.output)
    missing = runner("admin", "set-password", "nobody@example.com", "--password-stdin", input="x\n")
    assert missing.exit_code == 1
    assert "There is no editor account for nobody@example.com." in missing.output


def test_users_without_accounts(runner: Any) -> None:
    result = runner("admin", "users")
    assert result.exit_code == 0
    assert "No editor accounts" in result.output


def test_secret_key_is_used_for_the_proof(editor: User) -> None:
    assert accounts.session_proof(SECRET_KEY, editor) != accounts.session_proof("other", editor)
