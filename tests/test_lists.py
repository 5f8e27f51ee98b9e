"""Lists: `newsletter lists create` and `newsletter lists`."""

from __future__ import annotations

import pytest


def test_create_and_show_lists(runner):
    result = runner(
        "lists",
        "create",
        "weekly",
        "--name",
        "o11y weekly",
        "--from-address",
        "news@example.com",
        "--postal-address",
        "1 Example Street, Berlin",
    )
    assert result.exit_code == 0, result.output
    listing = runner("lists")
    assert "weekly\to11y weekly\tnews@example.com" in listing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Slug", "--name", "X", "--from-address", "a@example.com"], "not a valid list slug"),
        (["ok", "--name", "X", "--from-address", "not-an-address"], "From address"),
        (["ok", "--name", "  ", "--from-address", "a@example.com"], "needs a name"),
    ],
)
def test_bad_list_input_is_one_clear_line(runner, args, message):
    result = runner("lists", "create", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_duplicate_slug_is_refused(runner):
    args = ["lists", "create", "weekly", "--name", "W", "--from-address", "a@example.com"]
    assert runner(*args).exit_code == 0
    again = runner(*args)
    assert again.exit_code == 1
    assert "already exists" in again.output
