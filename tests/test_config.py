"""Configuration: defaults, environment variables, start-up checks."""

from __future__ import annotations

import pytest

from newsletter.config import ConfigError
from newsletter.config import load_config


def test_production_refuses_to_start_without_secret_key():
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY is not set"):
        load_config(environ={"NEWSLETTER_BASE_URL": "https://news.example.com"})


def test_production_requires_base_url():
    with pytest.raises(ConfigError, match="NEWSLETTER_BASE_URL is not set"):
        load_config(environ={"NEWSLETTER_SECRET_KEY": "s3cret"})


def test_development_has_defaults():
    config = load_config(environ={"NEWSLETTER_ENV": "development"})
    assert config["SECRET_KEY"]
    assert config["BASE_URL"] == "http://127.0.0.1:5000"
    assert config["DATABASE_URL"].startswith("sqlite:///")
    assert config["MAIL_BACKEND"] == "outbox"


def test_environment_values_are_parsed():
    config = load_config(
        environ={
            "NEWSLETTER_ENV": "development",
            "NEWSLETTER_SEND_RATE": "12.5",
            "NEWSLETTER_SNS_TOPIC_ARNS": "arn:a, arn:b,",
            "NEWSLETTER_BASE_URL": "https://news.example.com/",
        }
    )
    assert config["SEND_RATE"] == 12.5
    assert config["SNS_TOPIC_ARNS"] == ("arn:a", "arn:b")
    assert config["BASE_URL"] == "https://news.example.com"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NEWSLETTER_ENV", "staging", "NEWSLETTER_ENV must be"),
        ("NEWSLETTER_MAIL_BACKEND", "smtp", "NEWSLETTER_MAIL_BACKEND must be"),
        ("NEWSLETTER_SEND_RATE", "fast", "NEWSLETTER_SEND_RATE must be a number"),
        ("NEWSLETTER_SEND_RATE", "-1", "NEWSLETTER_SEND_RATE must be greater than 0"),
        ("NEWSLETTER_CONFIRM_MAX_AGE", "1.5", "NEWSLETTER_CONFIRM_MAX_AGE must be a whole number"),
        ("NEWSLETTER_SEND_CONCURRENCY", "0", "NEWSLETTER_SEND_CONCURRENCY must be between 1 and"),
        ("NEWSLETTER_SEND_CONCURRENCY", "-8", "NEWSLETTER_SEND_CONCURRENCY must be between 1 and"),
        ("NEWSLETTER_SEND_CONCURRENCY", "5000", "between 1 and 1024 .* got 5000"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={"NEWSLETTER_ENV": "development", name: value})
