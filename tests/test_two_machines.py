"""Any web machine serves any request: two app processes, one PostgreSQL database.

Each process has its own instance folder (its own "disk"); the editor's requests go to
one, then the other, in the middle of writing a draft and of an import. Nothing may be
lost, and nothing may be written to either disk.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import EDITOR_EMAIL
from conftest import EDITOR_PASSWORD
from conftest import _truncate_all
from conftest import csrf_token_from
from conftest import free_port

from newsletter import accounts
from newsletter import lists
from newsletter.db import make_engine
from newsletter.models import ImportUpload
from newsletter.models import Issue
from newsletter.models import IssueDraft
from newsletter.models import Subscription

ROOT = Path(__file__).resolve().parent.parent
ISSUE_YAML = (ROOT / "tests" / "data" / "sending-issue.yaml").read_text()
SERVER = """
import sys
from werkzeug.serving import make_server
from newsletter import create_app

app = create_app({"INSTANCE_PATH": sys.argv[2]})
server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
print("ready", flush=True)
server.serve_forever()
"""

pytestmark = pytest.mark.postgres


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 30x comes back as an HTTPError we read


class Editor:
    """A browser: one cookie jar for every machine, no automatic redirects."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def request(
        self, url: str, data: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, dict[str, str], str]:
        headers = {"Content-Type": content_type} if content_type else {}
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def get(self, url: str) -> tuple[int, dict[str, str], str]:
        return self.request(url)

    def post(self, url: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(fields).encode()
        return self.request(url, body, "application/x-www-form-urlencoded")

    def upload(
        self, url: str, fields: dict[str, str], name: str, content: bytes
    ) -> tuple[int, dict[str, str], str]:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
            for key, value in fields.items()
        ]
        body = (
            "".join(parts).encode()
            + (
                f"--{boundary}\r\nContent-Disposition: form-data; "
                f'name="file"; filename="{name}"\r\n'
                "Content-Type: text/csv\r\n\r\n"
            ).encode()
        )
        body += content + f"\r\n--{boundary}--\r\n".encode()
        return self.request(url, body, f"multipart/form-data; boundary={boundary}")


@pytest.fixture
def machines(postgres_url: str, tmp_path: Path) -> Iterator[tuple[list[str], list[Path]]]:
    """Two app processes on the one database, each with an instance folder of its own."""
    _truncate_all(postgres_url)
    engine = make_engine(postgres_url)
    with engine.begin() as connection:
        session = sa.orm.Session(bind=connection)
        lists.create_list(
            session,
            "weekly",
            name="o11y weekly",
            from_address="news@example.com",
            postal_address="1 Example Street, Berlin",
        )
        accounts.create_user(session, EDITOR_EMAIL, EDITOR_PASSWORD)
        session.flush()
    env = {
        "PATH": "/usr/bin:/bin",
        "NEWSLETTER_ENV": "development",
        "NEWSLETTER_DATABASE_URL": postgres_url,
        "NEWSLETTER_SECRET_KEY": "one-secret-for-every-machine-0123456789",
    }
    processes, urls, disks = [], [], []
    try:
        for name in ("a", "b"):
            disk = tmp_path / f"machine-{name}"
            disk.mkdir()
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(port), str(disk)],
                env=env,
                cwd=disk,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
            urls.append(f"http://127.0.0.1:{port}")
            disks.append(disk)
        yield urls, disks
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        engine.dispose()


def _files(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())


def test_an_editor_moves_between_machines_mid_draft_and_mid_import(
    machines: tuple[list[str], list[Path]], postgres_url: str
) -> None:
    (a, b), disks = machines
    editor = Editor()
    status, _, page = editor.get(f"{a}/admin/login")
    status, headers, _ = editor.post(
        f"{a}/admin/login",
        {"email": EDITOR_EMAIL, "password": EDITOR_PASSWORD, "csrf_token": csrf_token_from(page)},
    )
    assert status == 302, headers

    # An upload to machine b, mapped and started on machine a, followed on b.
    _, _, page = editor.get(f"{b}/admin/import")
    csv = b"email,name\n" + b"".join(b"r%d@example.org,Reader %d\n" % (i, i) for i in range(50))
    status, _, mapping = editor.upload(
        f"{b}/admin/import", {"csrf_token": csrf_token_from(page), "list": "weekly"}, "r.csv", csv
    )
    assert status == 200, mapping
    token = re.search(r'name="token" value="([^"]+)"', mapping).group(1)
    status, headers, body = editor.post(
        f"{a}/admin/import/start",
        {
            "csrf_token": csrf_token_from(mapping),
            "token": token,
            "filename": "r.csv",
            "list": "weekly",
            "email_column": "email",
            "name_column": "name",
            "consent": "consented",
        },
    )
    assert status == 303, body
    job = urllib.parse.urlparse(headers["Location"]).path
    deadline = time.monotonic() + 60
    while True:
        status, _, body = editor.get(f"{b}{job}.json")
        progress = json.loads(body)
        if progress["finished"]:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)
    assert progress["status"] == "done", progress
    assert progress["counts"]["imported"] == 50

    # A draft written on machine a ...
    _, _, page = editor.get(f"{a}/admin/issues")
    status, headers, body = editor.post(
        f"{a}/admin/issues",
        {"csrf_token": csrf_token_from(page), "list": "weekly", "yaml": ISSUE_YAML},
    )
    assert status in (302, 303), body
    draft_path = urllib.parse.urlparse(headers["Location"]).path
    assert re.fullmatch(r"/admin/issues/drafts/[A-Za-z0-9_-]+", draft_path)
    # ... is previewed, confirmed and sent from machine b.
    status, _, page = editor.get(f"{b}{draft_path}")
    assert status == 200 and "Unlocking the Kernel" in page
    assert editor.get(f"{b}{draft_path}/html")[0] == 200
    status, _, confirm = editor.get(f"{a}{draft_path}/confirm?mode=now")
    assert status == 200, confirm
    expected = re.search(r'name="expected" value="(\d+)"', confirm).group(1)
    status, headers, body = editor.post(
        f"{b}{draft_path}/send",
        {"csrf_token": csrf_token_from(confirm), "expected": expected, "mode": "now"},
    )
    assert status in (302, 303), body
    assert re.fullmatch(r"/admin/issues/\d+", urllib.parse.urlparse(headers["Location"]).path)

    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 50
            assert connection.scalar(sa.select(sa.func.count()).select_from(Issue)) == 1
            assert connection.scalar(sa.select(sa.func.count()).select_from(IssueDraft)) == 1
            uploads_left = connection.scalar(sa.select(sa.func.count()).select_from(ImportUpload))
            assert uploads_left == 0  # the job deleted the file it imported
    finally:
        engine.dispose()
    # Neither machine kept anything of the editor's work on its disk.
    for disk in disks:
        assert not [f for f in _files(disk) if not f.startswith("outbox/")], _files(disk)
