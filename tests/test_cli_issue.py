"""`newsletter issue check` and `newsletter issue preview`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "issue.yaml")

BAD = """\
title: Bad
date: 2023-11-06
sections:
  - items:
      - title: A
        url: ftp://example.com/a
        body: Body
        image: {src: https://example.com/a.png}
"""


def test_check_accepts_the_example(runner) -> None:
    result = runner("issue", "check", EXAMPLE)
    assert result.exit_code == 0, result.output
    assert f"{EXAMPLE}: OK: 'o11y news #42: Unlocking the Kernel'" in result.stdout
    assert "warning" not in result.output


def test_check_lists_every_error_and_exits_1(runner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    result = runner("issue", "check", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:6: sections[0].items[0].url: not an http(s) URL",
        f"{path}:8: sections[0].items[0].image.alt: missing: every image needs alt text",
        "2 errors in the issue file.",
    ]
    assert "Traceback" not in result.output


def test_check_warns_about_a_missing_preheader(runner, tmp_path: Path) -> None:
    path = tmp_path / "issue.yaml"
    path.write_text(BAD.replace("ftp:", "https:").replace("}", ", alt: A}"), encoding="utf-8")
    result = runner("issue", "check", str(path))
    assert result.exit_code == 0
    assert "warning: no preheader" in result.stderr


def test_preview_writes_html_and_text_for_the_list(runner, make_list, tmp_path: Path) -> None:
    make_list(slug="o11y-news", name="o11y news", postal_address="Rosenthaler Straße 40, Berlin")
    out = tmp_path / "out"
    result = runner("issue", "preview", EXAMPLE, "--out", str(out), "--name", "Zoë")
    assert result.exit_code == 0, result.output
    html = (out / "unlocking-the-kernel.html").read_text(encoding="utf-8")
    text = (out / "unlocking-the-kernel.txt").read_text(encoding="utf-8")
    assert "Rosenthaler Straße 40, Berlin" in html and "Rosenthaler Straße 40, Berlin" in text
    assert "Hi Zoë," in html and "Hi Zoë," in text
    assert "{{nl:" not in html and "{{nl:" not in text
    assert "placeholder" not in result.output
    assert f"Wrote {out / 'unlocking-the-kernel.html'}" in result.stdout


def test_preview_without_a_list_uses_a_placeholder_and_says_so(runner, tmp_path: Path) -> None:
    result = runner("issue", "preview", EXAMPLE, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "No list in the database: previewing with a placeholder" in result.stderr
    assert "Your newsletter" in (tmp_path / "unlocking-the-kernel.html").read_text()


def test_preview_with_an_unknown_list_fails_in_one_line(runner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner("issue", "preview", EXAMPLE, "--out", str(out), "--list", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: There is no list 'nope'."
    assert not out.exists()


def test_preview_of_a_bad_file_writes_nothing(runner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    out = tmp_path / "out"
    result = runner("issue", "preview", str(path), "--out", str(out))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "2 errors in the issue file: nothing was written."
    assert not out.exists()


def test_help_is_written_for_editors(runner) -> None:
    result = runner("issue", "--help")
    assert "Check and preview issue files" in result.output
    result = runner("issue", "preview", "--help")
    assert "--out" in result.output and "live preview" in result.output


def test_preview_with_several_lists_names_the_one_used(runner, make_list, tmp_path: Path) -> None:
    make_list(slug="alpha", name="Alpha news", postal_address="1 Alpha Road")
    make_list(slug="beta", name="Beta news", postal_address="2 Beta Road")
    result = runner("issue", "preview", EXAMPLE, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "Previewing for the list 'alpha' (choose another with --list SLUG)." in result.stderr
    result = runner("issue", "preview", EXAMPLE, "--out", str(tmp_path), "--list", "beta")
    assert "choose another" not in result.output
    assert "2 Beta Road" in (tmp_path / "unlocking-the-kernel.txt").read_text(encoding="utf-8")


def test_check_warns_when_gmail_would_clip_the_email(runner) -> None:
    path = Path(__file__).parent / "data" / "forty-items.yaml"
    result = runner("issue", "check", str(path))
    assert result.exit_code == 0  # a warning, not an error
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "KB after minifying, over Gmail's 102 KB" in warning
    assert re.search(r"about \d of its 40 stories", warning) and "--allow-clipping" in warning
