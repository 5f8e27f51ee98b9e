"""Settings: typed, frozen, with every default written once (config.Settings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from newsletter import config
from newsletter.config import DEFAULTS
from newsletter.config import Settings
from newsletter.config import load_config
from newsletter.config import settings_of
from newsletter.sending import WorkerSettings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_settings_are_frozen_and_typed(app: Any) -> None:
    settings = app.extensions["newsletter.settings"]
    assert isinstance(settings, Settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.worker_lease = 1  # type: ignore[misc]
    assert settings.base_url == app.config["BASE_URL"]
    assert settings.confirm_emails_per_day == app.config["CONFIRM_EMAILS_PER_DAY"]


def test_defaults_are_the_settings_fields() -> None:
    assert DEFAULTS == {f.name.upper(): f.default for f in dataclasses.fields(Settings)}
    # What other modules used to repeat now comes from here.
    assert WorkerSettings().lease == Settings.worker_lease
    assert WorkerSettings.from_config({}).concurrency == Settings.send_concurrency
    assert settings_of({"WORKER_LEASE": 7}).worker_lease == 7
    assert settings_of({}).sns_dedupe_retention_days == 30


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("SEND_CONCURRENCY", "12", 12),
        ("SES_TIMEOUT", "2.5", 2.5),
        ("SEND_RATE", "14", 14.0),
        ("CHECK_DELIVERABILITY", "yes", True),
        ("METRICS_TOKEN", "t0ken", "t0ken"),
    ],
)
def test_variables_are_read_by_their_type(name: str, raw: str, expected: Any) -> None:
    loaded = load_config({"ENV": "development"}, environ={f"NEWSLETTER_{name}": raw})
    assert loaded[name] == expected
    assert getattr(settings_of(loaded), name.lower()) == expected


def test_every_documented_setting_exists() -> None:
    documented = set(config.re.findall(r"`NEWSLETTER_([A-Z_0-9]+)`", README))
    documented = {name for name in documented if not name.startswith("TEST_")}
    assert documented - set(DEFAULTS) == set()


@pytest.mark.parametrize(
    ("overrides", "batch_size"),
    [
        ({"concurrency": 1}, 50),  # never fewer than 50 rows a claim
        ({"concurrency": 64}, 640),  # ten rounds of calls in flight
        ({}, 1000),  # the default cap (256): at most 1,000 rows a claim
        ({"concurrency": 1024}, 1000),
        ({"concurrency": 1024, "batch_size": 3000}, 3000),  # an explicit size is kept
    ],
)
def test_a_worker_claims_rows_in_batches_of_bounded_size(overrides, batch_size) -> None:
    assert WorkerSettings.from_config({}, **overrides).batch_size == batch_size
