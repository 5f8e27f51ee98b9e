"""`newsletter db prune`: only what is past its retention goes, whatever the kind."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.config import ConfigError
from newsletter.config import load_config
from newsletter.models import ImportUpload
from newsletter.models import ImportUploadChunk
from newsletter.models import IssueDraft
from newsletter.models import RateLimitCounter
from newsletter.models import SnsNotification
from newsletter.models import SubscriptionEvent
from newsletter.pacing import PaceSettings
from newsletter.sending import DeliveryWorker
from newsletter.sending import WorkerSettings

DAY = timedelta(days=1)


def _fill(db_session: Any, now: Any) -> None:
    """Per kind: one row just past its retention, one exactly at it, one recent."""
    for name, days in (("old", 2), ("edge", 2), ("new", 1)):
        start = now - days * DAY - (timedelta(seconds=1) if name == "old" else timedelta())
        db_session.add(RateLimitCounter(key=f"k-{name}", window_start=start, count=1))
    for name, age in (("old", 30 * DAY + timedelta(seconds=1)), ("edge", 30 * DAY), ("new", DAY)):
        db_session.add(
            SnsNotification(
                message_id=f"m-{name}",
                topic_arn="arn:x",
                event_type="Bounce",
                received_at=now - age,
            )
        )
        db_session.add(
            IssueDraft(
                token=f"draft-{name}-0123456789",
                list_slug="weekly",
                source_name="x.yaml",
                text="title: x",
                updated_at=now - age,
            )
        )
    for name, age in (
        ("old", DAY + timedelta(seconds=1)),
        ("edge", DAY),
        ("new", timedelta(hours=1)),
    ):
        upload = ImportUpload(token=f"u-{name}", filename="a.csv", size=3, created_at=now - age)
        db_session.add(upload)
        db_session.flush()
        db_session.add(ImportUploadChunk(upload_id=upload.id, seq=0, data=b"a,b"))
    db_session.commit()


def _left(db_session: Any) -> dict[str, list[str]]:
    db_session.expire_all()
    left = {
        "counters": sorted(db_session.scalars(sa.select(RateLimitCounter.key))),
        "sns": sorted(db_session.scalars(sa.select(SnsNotification.message_id))),
        "drafts": sorted(t.split("-")[1] for t in db_session.scalars(sa.select(IssueDraft.token))),
        "uploads": sorted(db_session.scalars(sa.select(ImportUpload.token))),
        "chunks": sorted(
            str(n) for n in db_session.scalars(sa.select(ImportUploadChunk.upload_id))
        ),
    }
    db_session.rollback()
    return left


def test_prune_removes_only_what_is_past_retention(
    runner: Any, db_session: Any, clock: Any, make_list: Any, make_subscriber: Any
) -> None:
    subscription = make_subscriber(make_list())
    events = db_session.scalar(sa.select(sa.func.count()).select_from(SubscriptionEvent))
    _fill(db_session, clock.current)
    result = runner("db", "prune")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "Deleted rate-limit counters: 1, SNS dedupe rows: 1, drafts: 1, staged uploads: 1."
    )
    left = _left(db_session)
    assert left["counters"] == ["k-edge", "k-new"]
    assert left["sns"] == ["m-edge", "m-new"]
    assert left["drafts"] == ["edge", "new"]
    assert left["uploads"] == ["u-edge", "u-new"]
    assert len(left["chunks"]) == 2  # the old upload's chunks went with it
    # Nothing else is touched.
    assert db_session.get(type(subscription), subscription.id) is not None
    assert db_session.scalar(sa.select(sa.func.count()).select_from(SubscriptionEvent)) == events
    db_session.rollback()

    again = runner("db", "prune")
    assert "counters: 0, SNS dedupe rows: 0, drafts: 0, staged uploads: 0" in again.output


def test_retention_settings_are_read_from_the_environment(
    runner: Any, db_session: Any, clock: Any, app: Any
) -> None:
    _fill(db_session, clock.current)
    app.config["DRAFT_RETENTION_DAYS"] = 10_000
    app.config["SNS_DEDUPE_RETENTION_DAYS"] = 1
    runner("db", "prune")
    left = _left(db_session)
    assert left["drafts"] == ["edge", "new", "old"]
    assert left["sns"] == ["m-new"]  # received a day ago exactly: at the retention, kept


def test_workers_prune_when_they_start(app: Any, db_session: Any, clock: Any) -> None:
    _fill(db_session, clock.current)
    DeliveryWorker(
        app.extensions["newsletter.db"],
        app.extensions["newsletter.mailer"],
        app.config,
        PaceSettings(max_rate=None, quota=None),
        settings=WorkerSettings(concurrency=1, batch_size=5, lease=30),
    ).run(until_idle=True)
    assert _left(db_session)["drafts"] == ["edge", "new"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NEWSLETTER_DRAFT_RETENTION_DAYS": "0"}, "NEWSLETTER_DRAFT_RETENTION_DAYS must be at"),
        ({"NEWSLETTER_UPLOAD_RETENTION_DAYS": "x"}, "must be a whole number"),
        (
            {"NEWSLETTER_RATE_LIMIT_RETENTION_DAYS": "1", "NEWSLETTER_LOGIN_WINDOW": "172800"},
            "must cover the longest rate-limit window",
        ),
    ],
)
def test_bad_retention_settings(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"ENV": "development"}, environ=environ)


def test_retention_defaults_are_documented() -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for key in ("RATE_LIMIT", "SNS_DEDUPE", "DRAFT", "UPLOAD"):
        assert f"`NEWSLETTER_{key}_RETENTION_DAYS`" in text
