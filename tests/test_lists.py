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
        (
            [
                "ok",
                "--name",
                "=?utf-8?q?Evil=0D=0AX-Injected:_yes?=\u2028",
                "--from-address",
                "a@b.io",
            ],
            "The list name contains control characters (U+2028 (LINE SEPARATOR))",
        ),
        *[
            (
                ["ok", "--name", f"o11y{ch}weekly", "--from-address", "a@example.com"],
                f"The list name contains control characters (U+{ord(ch):04X}",
            )
            for ch in "\x00\x1b\x0b\x0c\x1c\x1d\x1e\x85\u2029\r\n"
        ],
        (
            [
                "ok",
                "--name",
                "X",
                "--from-address",
                "a@b.io",
                "--postal-address",
                "1 Street\nBer\x85lin",
            ],
            "The postal address, line 2: contains control characters (U+0085 (NEXT LINE))",
        ),
        (["ok", "--name", "X", "--from-address", "jürgen@example.com"], "From address"),
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "o11y\u2028weekly"], "The list name contains control characters (U+2028"),
        (["--postal-address", "1 Street\nBer\x1blin"], "The postal address, line 2: contains"),
    ],
)
def test_update_refuses_control_characters_and_keeps_the_list(runner, args, message):
    create = ["lists", "create", "weekly", "--name", "W", "--from-address", "a@example.com"]
    assert runner(*create).exit_code == 0
    result = runner("lists", "update", "weekly", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "weekly\tW\ta@example.com" in runner("lists").output
