"""Prometheus metrics: /metrics behind its token, what is counted, workers, gunicorn."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sns_fixtures import notification
from sns_fixtures import ses_event

from newsletter import create_app
from newsletter import metrics
from newsletter import tokens
from newsletter.errors import NewsletterError
from newsletter.mail import SesMailer
from newsletter.models import DeliveryStatus
from newsletter.models import Subscription
from newsletter.pacing import AccountQuota
from newsletter.pacing import FixedQuotaSource
from newsletter.pacing import PaceSettings
from newsletter.sending import DeliveryWorker
from newsletter.sending import WorkerSettings

TOKEN = "s3cret-metrics-token"
ROOT = Path(__file__).resolve().parent.parent
CONFIRM_PATH = re.compile(r"https://news\.example\.com(/confirm/[A-Za-z0-9_.\-]+)")
# Every name issue 16 asks for (counters carry _total, the histogram _bucket/_sum/_count).
NAMES = {
    "newsletter_messages_total",
    "newsletter_ses_call_seconds_bucket",
    "newsletter_ses_throttles_total",
    "newsletter_send_rate",
    "newsletter_ses_quota_left",
    "newsletter_queue_depth",
    "newsletter_signups_total",
    "newsletter_confirmations_total",
    "newsletter_unsubscribes_total",
    "newsletter_sns_notifications_total",
    "newsletter_webhook_failures_total",
}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "METRICS_TOKEN": TOKEN}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: Any) -> dict[str, list[Any]]:
    """GET /metrics with the token; return {sample name: [samples]}."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_no_token_configured_means_no_metrics(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, "METRICS_TOKEN": None})
    try:
        response = app.test_client().get("/metrics", headers={"Authorization": "Bearer x"})
        assert response.status_code == 404
    finally:
        app.extensions["newsletter.db"].dispose()


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ünïcode"],
)
def test_metrics_refuse_without_the_token(client: Any, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"newsletter_" not in response.data


def test_metrics_expose_every_name_with_the_token(
    app: Any,
    client: Any,
    db_session: Any,
    start_issue: Any,
    make_ledger: Any,
    sns: Any,
) -> None:
    start_issue(readers=1)
    waiting, _ = make_ledger(["queued@example.org", "q2@example.org"], DeliveryStatus.QUEUED)
    db_session.commit()
    quota = AccountQuota(max_send_rate=20, max_24_hour_send=1000, sent_last_24_hours=10)
    worker = DeliveryWorker(
        app.extensions["newsletter.db"],
        app.extensions["newsletter.mailer"],
        app.config,
        PaceSettings(max_rate=10, quota=quota),
        settings=WorkerSettings(concurrency=2, batch_size=5, lease=30),
        quota_source=FixedQuotaSource(quota),
    )
    worker.run(until_idle=True)
    headers = {"Content-Type": "text/plain; charset=UTF-8"}
    client.post("/webhooks/ses", data="not json", headers=headers)
    event = ses_event("Delivery", "queued@example.org")
    client.post("/webhooks/ses", data=json.dumps(notification(sns.signer, event)), headers=headers)

    samples = scrape(client)
    assert NAMES <= set(samples), sorted(NAMES - set(samples))
    depth = {s.labels["issue"]: s.value for s in samples["newsletter_queue_depth"]}
    assert depth == {str(waiting.id): 2}
    assert samples["newsletter_send_rate"][0].value == 10
    assert 0 < samples["newsletter_ses_quota_left"][0].value <= 1000 - 10
    assert samples["newsletter_database_up"][0].value == 1


def test_reader_path_is_counted_once_committed(
    client: Any, make_list: Any, outbox: Any, db_session: Any, app: Any
) -> None:
    make_list()
    before = {
        n: value(f"newsletter_{n}_total") for n in ("signups", "confirmations", "unsubscribes")
    }
    client.post("/subscribe", data={"email": "reader@example.com", "list": "weekly"})
    mime = email.message_from_bytes(outbox.messages[-1].as_bytes(), policy=email.policy.SMTP)
    path = CONFIRM_PATH.search(mime.get_body(preferencelist=("plain",)).get_content()).group(1)
    client.get(path)  # the page: nothing counted
    assert value("newsletter_confirmations_total") == before["confirmations"]
    client.post(path)
    client.post(path)  # used again: refused, nothing counted
    subscription_id = db_session.scalar(sa.select(Subscription.id))
    db_session.commit()
    unsubscribe = f"/u/{tokens.make_unsubscribe_token(app.config['SECRET_KEY'], subscription_id)}"
    client.post(unsubscribe, data={"action": "unsubscribe"})
    after = {n: value(f"newsletter_{n}_total") for n in before}
    assert {n: after[n] - before[n] for n in before} == {
        "signups": 1,
        "confirmations": 1,
        "unsubscribes": 1,
    }


def test_a_rolled_back_change_is_not_counted(db_session: Any) -> None:
    before = value("newsletter_signups_total")
    db_session.execute(sa.text("SELECT 1"))
    metrics.count_on_commit(db_session, metrics.SIGNUPS)
    db_session.rollback()
    db_session.commit()
    assert value("newsletter_signups_total") == before
    metrics.count_on_commit(db_session, metrics.SIGNUPS)
    db_session.commit()
    assert value("newsletter_signups_total") == before + 1


def test_sns_notifications_by_type_and_webhook_failures(
    client: Any, sns: Any, make_ledger: Any
) -> None:
    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Delivery", "jane@example.com", message_id=row.ses_message_id)
    delivered = value("newsletter_sns_notifications_total", type="delivery", outcome="applied")
    forged = value("newsletter_webhook_failures_total", reason="MalformedMessage")
    headers = {"Content-Type": "text/plain; charset=UTF-8"}
    message = json.dumps(notification(sns.signer, event))
    assert client.post("/webhooks/ses", data=message, headers=headers).status_code == 200
    assert client.post("/webhooks/ses", data="{}", headers=headers).status_code == 400
    assert (
        value("newsletter_sns_notifications_total", type="delivery", outcome="applied")
        == delivered + 1
    )
    assert value("newsletter_webhook_failures_total", reason="MalformedMessage") == forged + 1


def test_ses_calls_are_timed_and_messages_counted_by_outcome(
    app: Any, start_issue: Any, moto_ses: Any
) -> None:
    issue = start_issue(readers=3)
    calls = value("newsletter_ses_call_seconds_count")
    sent = value("newsletter_messages_total", outcome="sent", issue=str(issue.id))
    mailer = SesMailer(endpoint_url=moto_ses.url)
    DeliveryWorker(
        app.extensions["newsletter.db"],
        mailer,
        app.config,
        PaceSettings(max_rate=None, quota=None),
        settings=WorkerSettings(concurrency=2, batch_size=5, lease=30),
    ).run(until_idle=True)
    assert value("newsletter_ses_call_seconds_count") - calls == 3
    assert value("newsletter_messages_total", outcome="sent", issue=str(issue.id)) - sent == 3


def test_worker_metrics_port(app: Any) -> None:
    server, thread = metrics.serve(app.extensions["newsletter.db"], 0, "127.0.0.1")
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "newsletter_ses_call_seconds_bucket" in text
        assert "newsletter_database_up 1.0" in text
        with pytest.raises(NewsletterError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            metrics.serve(app.extensions["newsletter.db"], port, "127.0.0.1")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_worker_metrics_port_taken_is_one_line(runner: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner(
            "worker", "--once", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"
        )
    assert result.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_gunicorn_workers_add_up_their_metrics(tmp_path: Path) -> None:
    """Real gunicorn, two worker processes, prometheus_client's multi-process mode."""
    from conftest import free_port

    database = tmp_path / "web.db"
    env = {
        **os.environ,
        "NEWSLETTER_ENV": "development",
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{database}",
        "NEWSLETTER_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    subprocess.run(
        [str(Path(sys.executable).parent / "newsletter"), "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "python:newsletter.gunicorn_config",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        for _ in range(6):
            request = urllib.request.Request(
                f"{base}/webhooks/ses", data=b"not json", method="POST"
            )
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=10)
        assert _get(f"{base}/metrics")[0] == 401
        for _ in range(4):  # whichever worker answers, it reports every worker's posts
            status, text = _get(f"{base}/metrics", {"Authorization": f"Bearer {TOKEN}"})
            assert status == 200
            wanted = 'newsletter_webhook_failures_total{reason="MalformedMessage"} 6.0'
            assert wanted in text
        assert list((tmp_path / "prometheus").glob("counter_*.db"))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_grafana_dashboard_uses_only_metrics_we_expose() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"newsletter_[a-z_]+", expr)
    }
    source = (ROOT / "newsletter" / "metrics.py").read_text()
    defined = set(re.findall(r'"(newsletter_[a-z_]+)"', source))
    assert used and used <= defined, sorted(used - defined)
    assert NAMES <= {f"{name}_total" for name in used} | {f"{name}_bucket" for name in used} | used
