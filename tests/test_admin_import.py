"""The console's import pages: upload, map the columns, choose the consent, follow the job."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask

from newsletter import imports
from newsletter.mail import MemoryMailer
from newsletter.models import ImportJob
from newsletter.models import ImportMode
from newsletter.models import ImportStatus
from newsletter.models import ImportUpload
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from tests.conftest import EDITOR_EMAIL
from tests.conftest import EDITOR_PASSWORD
from tests.conftest import csrf_token_from

S = SubscriptionStatus
WITH_BAD_ROWS = (
    "\ufeffE-mail;Full name;Notes\n"
    "ada@example.org;Ada Lovelace;first\n"  # line 2
    "not-an-email;Bad;\n"  # line 3
    "grace@example.org;Grace Hopper;\n"  # line 4
    "\n"  # line 5
    'zoe@example.org;"Ångström; Zoë";\n'  # line 6
    "ADA@example.org;Ada again;\n"  # line 7: merged
    "x@y;Short;\n"  # line 8
).encode()


@pytest.fixture
def weekly(make_list: Callable[..., MailingList]) -> MailingList:
    return make_list()


def upload(client: Any, content: bytes | None, list_slug: str = "weekly", **kw: Any) -> Any:
    data: dict[str, Any] = {"csrf_token": kw.pop("csrf", None) or client.csrf(), "list": list_slug}
    if content is not None:
        data["file"] = (io.BytesIO(content), kw.pop("filename", "people.csv"))
    return client.post("/admin/import", data=data, content_type="multipart/form-data")


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def start(client: Any, mapping: Any, **fields: str) -> Any:
    html = mapping.get_data(as_text=True)
    data = {
        "csrf_token": csrf_token_from(html),
        "token": hidden(html, "token"),
        "filename": hidden(html, "filename"),
        "list": hidden(html, "list"),
        "email_column": "E-mail",
        "name_column": "Full name",
        "consent": "consented",
    }
    data.update(fields)
    return client.post("/admin/import/start", data=data)


def wait_done(client: Any, job_id: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(f"/admin/import/{job_id}.json").get_json()
        if data["finished"]:
            return data
        assert time.monotonic() < deadline, f"import {job_id} still {data['status']}"
        time.sleep(0.05)


def job_id_of(response: Any) -> int:
    assert response.status_code == 303, response.get_data(as_text=True)
    match = re.fullmatch(r"/admin/import/(\d+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return int(match.group(1))


def imports_folder(app: Flask) -> Path:
    return Path(app.instance_path) / "imports"


def leftover_files(app: Flask) -> list[str]:
    """The staged uploads in the database, by token; and never a file on this machine."""
    assert not imports_folder(app).exists()
    with app.extensions["newsletter.db"].transaction() as session:
        return sorted(session.scalars(sa.select(ImportUpload.token)))


def statuses(session: so.Session, mailing_list: MailingList) -> dict[str, S]:
    session.expire_all()
    rows = session.execute(
        sa.select(Subscriber.email, Subscription.status)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == mailing_list.id)
    )
    found = {email: status for email, status in rows}
    session.commit()  # SQLite: do not keep the write lock
    return found


def count(session: so.Session, model: type) -> int:
    value = session.scalar(sa.select(sa.func.count()).select_from(model))
    session.commit()
    return value


# --- The flow --------------------------------------------------------------------------


def test_upload_map_start_and_follow(
    admin_client: Any, app: Flask, weekly: MailingList, db_session: so.Session
) -> None:
    page = admin_client.get("/admin/import")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and "No imports yet" in html

    mapping = upload(admin_client, WITH_BAD_ROWS, filename="../../etc/members.csv")
    assert mapping.status_code == 200
    html = mapping.get_data(as_text=True)
    assert '<option value="E-mail" selected>' in html
    assert '<option value="Full name" selected>' in html
    assert '<option value="Notes" >' in html or '<option value="Notes">' in html
    assert "These people already agreed to receive this list" in html
    assert "Send each a confirmation email" in html
    assert "checked" not in html  # the consent is the editor's choice, never a default
    # Sample rows under their columns, so the editor sees what each one holds.
    samples = re.findall(r"<tr>(<td>.*?)</tr>", html.split('class="table sample-rows"')[1])
    assert len(samples) == 5
    assert samples[0] == "<td>ada@example.org</td><td>Ada Lovelace</td><td>first</td>"
    assert "<td>zoe@example.org</td><td>Ångström; Zoë</td>" in samples[3]
    assert "import-warning" not in html  # the address column was found
    assert hidden(html, "filename") == "members.csv"  # no folders from the client
    token = hidden(html, "token")
    assert leftover_files(app) == [token]

    response = start(admin_client, mapping)
    job_id = job_id_of(response)
    data = wait_done(admin_client, job_id)

    assert data["status"] == "done" and data["percent"] == 100 and data["error"] is None
    assert data["counts"] == {
        "rows": 6,
        "imported": 3,
        "confirmations": 0,
        "merged": 1,
        "refused": 0,
        "blank": 1,
        "bad": 2,
    }
    assert [b["line"] for b in data["bad_rows"]] == [3, 8]
    assert data["bad_rows"][0]["reason"].startswith('email "not-an-email": ')
    assert statuses(db_session, weekly) == dict.fromkeys(
        ["ada@example.org", "grace@example.org", "zoe@example.org"], S.ACTIVE
    )
    job = db_session.get(ImportJob, job_id)
    assert (job.filename, job.mode, job.status) == (
        "members.csv",
        ImportMode.CONSENTED,
        ImportStatus.DONE,
    )
    sub = db_session.scalar(sa.select(Subscription).limit(1))
    assert sub.consent_form == "import: members.csv"
    db_session.commit()
    # The file is deleted once imported.
    deadline = time.monotonic() + 5
    while leftover_files(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover_files(app) == []

    job_page = admin_client.get(f"/admin/import/{job_id}").get_data(as_text=True)
    assert re.search(r'<td class="num">3</td><td>email &#34;not-an-email&#34;', job_page)
    assert '<td class="num">8</td>' in job_page
    assert 'data-count="imported">3<' in job_page
    assert 'id="import-refresh"' not in job_page  # done: nothing to refresh
    assert "admin-import.js" in job_page and "<script>" not in job_page

    listing = admin_client.get("/admin/import").get_data(as_text=True)
    assert f'href="/admin/import/{job_id}"' in listing and "members.csv" in listing


def test_double_opt_in_from_the_console(
    admin_client: Any, weekly: MailingList, db_session: so.Session, outbox: MemoryMailer
) -> None:
    mapping = upload(admin_client, b"email,name\nr1@example.org,R1\nr2@example.org,\n")
    job_id = job_id_of(
        start(
            admin_client, mapping, email_column="email", name_column="name", consent="double_opt_in"
        )
    )
    data = wait_done(admin_client, job_id)
    assert data["counts"]["imported"] == 2 and data["counts"]["confirmations"] == 2
    assert sorted(m.recipient for m in outbox.messages) == ["r1@example.org", "r2@example.org"]
    assert statuses(db_session, weekly) == dict.fromkeys(
        ["r1@example.org", "r2@example.org"], S.PENDING
    )


def test_columns_chosen_by_the_editor(
    admin_client: Any, weekly: MailingList, db_session: so.Session
) -> None:
    content = b"Work,Home,Nick\nada@work.example,ada@home.example,Countess\n"
    mapping = upload(admin_client, content)
    html = mapping.get_data(as_text=True)
    assert mapping.status_code == 200
    assert "choose the one that holds the addresses" in html
    assert '<option value="">Choose a column…</option>' in html
    job_id = job_id_of(start(admin_client, mapping, email_column="Home", name_column="Nick"))
    assert wait_done(admin_client, job_id)["counts"]["imported"] == 1
    assert statuses(db_session, weekly) == {"ada@home.example": S.ACTIVE}
    found = db_session.scalar(sa.select(Subscriber.name))
    assert found == "Countess"


def _half_way_job(db_session: so.Session, weekly: MailingList, filename: str) -> ImportJob:
    """A job as the page sees it half-way (no thread runs for it)."""
    job = ImportJob(
        list_id=weekly.id,
        filename=filename,
        mode=ImportMode.CONSENTED,
        status=ImportStatus.RUNNING,
        rows=5000,
        imported=4900,
        bytes_total=1000,
        bytes_done=420,
    )
    db_session.add(job)
    db_session.commit()
    return job


def test_a_running_job_page_works_without_javascript(
    admin_client: Any, app: Flask, weekly: MailingList, db_session: so.Session
) -> None:
    job = _half_way_job(db_session, weekly, "half.csv")
    page = admin_client.get(f"/admin/import/{job.id}").get_data(as_text=True)
    assert '<progress id="import-bar" max="100" value="42">' in page
    assert f'<a id="import-refresh" href="/admin/import/{job.id}">Refresh</a>' in page
    assert 'data-count="rows">5,000<' in page
    data = admin_client.get(f"/admin/import/{job.id}.json").get_json()
    assert (data["status"], data["finished"], data["percent"]) == ("running", False, 42)
    assert data["bad_rows"] == []


def test_a_job_whose_process_died_shows_failed(
    admin_client: Any, app: Flask, weekly: MailingList, db_session: so.Session, clock: Any
) -> None:
    # The web process restarted mid-import: nobody will ever finish or touch this job.
    job = _half_way_job(db_session, weekly, "cut.csv")
    assert admin_client.get(f"/admin/import/{job.id}.json").get_json()["status"] == "running"

    clock.advance(minutes=3)
    data = admin_client.get(f"/admin/import/{job.id}.json").get_json()
    assert (data["status"], data["finished"]) == ("failed", True)
    assert data["error"] == imports.STALLED_JOB_ERROR
    assert data["counts"]["imported"] == 4900  # what it stored is still counted
    page = admin_client.get(f"/admin/import/{job.id}").get_data(as_text=True)
    assert "import-refresh" not in page
    assert "The import stopped: <span" in page and "a restart or a crash" in page
    listing = admin_client.get("/admin/import").get_data(as_text=True)
    assert "cut.csv" in listing and "failed" in listing
    db_session.expire_all()
    assert db_session.get(ImportJob, job.id).status is ImportStatus.FAILED  # recorded


def test_mapping_warns_when_no_column_is_called_email(admin_client: Any, weekly: Any) -> None:
    mapping = upload(admin_client, b"Adresse,Nom\nada@example.org,Ada\n")
    html = mapping.get_data(as_text=True)
    assert mapping.status_code == 200
    warning = re.search(r'<p class="(\w+)" role="status" id="import-warning">', html)
    assert warning and warning.group(1) == "warning"  # styled as a warning, not a success


# --- Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "list_slug", "message"),
    [
        pytest.param(None, "weekly", "Choose a CSV file to import.", id="no-file"),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00",
            "weekly",
            "this is not a CSV file (it looks like a PNG image)",
            id="png",
        ),
        pytest.param(
            b"%PDF-1.7\n%\xe2\xe3", "weekly", "not a CSV file (it looks like a PDF", id="pdf"
        ),
        pytest.param(
            b"email\nab\x00cd\n", "weekly", "not a CSV file (it looks like a binary", id="nul"
        ),
        pytest.param(b"PK\x03\x04\x14\x00\x06\x00", "weekly", "spreadsheet workbook", id="xlsx"),
        pytest.param(b"", "weekly", "the file is empty", id="empty"),
        pytest.param(
            b"ada@example.org,Ada\nbob@example.org,Bob\n",
            "weekly",
            "holds addresses, not column names",
            id="no-header",
        ),
        pytest.param(
            b"email\nx@example.org\n", "nope", "There is no list &#39;nope&#39;.", id="unknown-list"
        ),
        pytest.param(
            b"email\nx@example.org\n", "", "Choose the list to import into.", id="no-list"
        ),
    ],
)
def test_bad_uploads_are_refused(
    admin_client: Any,
    app: Flask,
    weekly: MailingList,
    db_session: so.Session,
    content: bytes | None,
    list_slug: str,
    message: str,
) -> None:
    response = upload(admin_client, content, list_slug)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert 'id="import-error"' in html and 'name="file"' in html  # the form, to try again
    assert leftover_files(app) == []
    assert count(db_session, ImportJob) == 0


def test_too_large(admin_client: Any, app: Flask, weekly: MailingList, db_session: Any) -> None:
    app.config["IMPORT_MAX_BYTES"] = 2048
    content = b"email\n" + b"".join(b"r%d@example.org\n" % i for i in range(200))
    response = upload(admin_client, content)
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "larger than 2.0 KB" in html and "newsletter subscribers import" in html
    assert leftover_files(app) == [] and count(db_session, ImportJob) == 0


def test_uploads_may_be_larger_than_other_requests(
    admin_client: Any, app: Flask, weekly: MailingList
) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024
    app.config["IMPORT_MAX_BYTES"] = 1024 * 1024
    content = b"email\n" + b"".join(b"r%d@example.org\n" % i for i in range(2000))
    assert len(content) > 20_000
    response = upload(admin_client, content)
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"consent": ""}, "Choose whether these people already agreed"),
        ({"consent": "maybe"}, "Choose whether these people already agreed"),
        ({"email_column": ""}, "Choose the column that holds the email addresses."),
        ({"email_column": "Phone"}, "Choose the column that holds the email addresses."),
        ({"name_column": "Nope"}, "Choose the column with the names, or none."),
        ({"name_column": "E-mail"}, "The name column cannot be the address column."),
    ],
)
def test_bad_mapping_shows_the_mapping_again(
    admin_client: Any,
    app: Flask,
    weekly: MailingList,
    db_session: so.Session,
    fields: dict[str, str],
    message: str,
) -> None:
    mapping = upload(admin_client, WITH_BAD_ROWS)
    response = start(admin_client, mapping, **fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert 'name="email_column"' in html and hidden(html, "token") == hidden(
        mapping.get_data(as_text=True), "token"
    )
    assert count(db_session, ImportJob) == 0 and count(db_session, Subscription) == 0
    # The upload is kept: the corrected form starts the import.
    job_id = job_id_of(start(admin_client, response))
    assert wait_done(admin_client, job_id)["counts"]["imported"] == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"token": "../../../etc/passwd"}, "unknown or has expired"),
        ({"token": "A" * 32}, "unknown or has expired"),
        ({"list": "nope"}, "There is no list"),
    ],
)
def test_start_with_a_bad_token_or_list(
    admin_client: Any, weekly: MailingList, db_session: Any, fields: dict[str, str], message: str
) -> None:
    mapping = upload(admin_client, WITH_BAD_ROWS)
    response = start(admin_client, mapping, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count(db_session, ImportJob) == 0


def test_missing_csrf_is_refused(admin_client: Any, app: Flask, weekly: MailingList) -> None:
    response = admin_client.post(
        "/admin/import",
        data={"list": "weekly", "file": (io.BytesIO(b"email\nx@example.org\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert leftover_files(app) == []
    mapping = upload(admin_client, WITH_BAD_ROWS)
    response = start(admin_client, mapping, csrf_token="")
    assert response.status_code == 400


def test_unknown_job(admin_client: Any) -> None:
    assert admin_client.get("/admin/import/999").status_code == 404
    assert admin_client.get("/admin/import/999.json").status_code == 404


def test_pages_need_a_login(client: Any, weekly: MailingList) -> None:
    for url in ("/admin/import", "/admin/import/1", "/admin/import/1.json"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


# --- In Chromium -----------------------------------------------------------------------


def test_importing_a_csv_with_bad_rows_in_the_browser(
    live_server: str,
    page: Any,
    editor: Any,
    weekly: MailingList,
    tmp_path: Path,
    db_session: so.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The import waits until the job page is open, so the page's script is what turns
    # "queued" into "done" and fills in the bad rows.
    release = threading.Event()
    real_run_job = imports.run_job

    def gated_run_job(*args: Any, **kwargs: Any) -> None:
        assert release.wait(30)
        real_run_job(*args, **kwargs)

    monkeypatch.setattr(imports, "run_job", gated_run_job)
    problems: list[str] = []
    # Script errors, CSP refusals and failed requests (the browser's own favicon aside).
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    path = tmp_path / "readers.csv"
    path.write_bytes(WITH_BAD_ROWS)

    page.goto(f"{live_server}/admin/login")
    page.fill("input[name=email]", EDITOR_EMAIL)
    page.fill("input[name=password]", EDITOR_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/**")
    page.goto(f"{live_server}/admin/import")
    page.set_input_files("#file", str(path))
    page.click("text=Upload and choose columns")

    assert page.input_value("#email_column") == "E-mail"
    assert page.input_value("#name_column") == "Full name"
    page.check("input[value=consented]")
    page.click("text=Start the import")

    page.wait_for_selector("#import-status:text('queued')")
    assert page.is_visible("#import-refresh") and page.is_hidden("#bad-rows")
    release.set()
    page.wait_for_selector("#import-status:text('done')", timeout=30_000)
    page.wait_for_selector("#bad-rows:not([hidden])")
    lines = page.locator("#bad-rows-body tr td.num").all_text_contents()
    assert lines == ["3", "8"]
    reasons = page.locator("#bad-rows-body tr td:last-child").all_text_contents()
    assert reasons[0].startswith('email "not-an-email"')
    assert page.text_content('[data-count="imported"]') == "3"
    assert page.text_content('[data-count="merged"]') == "1"
    assert page.text_content('[data-count="bad"]') == "2"
    assert page.get_attribute("#import-bar", "value") == "100"
    assert page.is_hidden("#import-refresh")
    failed = [url for url in failed if not url.endswith("/favicon.ico")]
    assert failed == []
    assert [p for p in problems if "404" not in p] == []
    assert statuses(db_session, weekly) == dict.fromkeys(
        ["ada@example.org", "grace@example.org", "zoe@example.org"], S.ACTIVE
    )
