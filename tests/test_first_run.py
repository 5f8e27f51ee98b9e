"""The first run: the README's first command twice in a fresh copy, the development hint,
`serve --port`, and `newsletter --help` listing every command without importing it."""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import newsletter.cli
from newsletter.cli import COMMANDS
from newsletter.cli import CliState
from newsletter.cli import help_line
from newsletter.cli import main as cli_main
from newsletter.cli.serve import local_base_url

ROOT = Path(__file__).resolve().parent.parent
NOT_COPIED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "instance",
    "test-artifacts",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    "bench",
)


@pytest.mark.slow
def test_demo_runs_twice_in_a_fresh_copy(tmp_path: Path) -> None:
    """README: `... && sh examples/demo.sh` passes the first time and the second."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    # The copy's .venv/bin/newsletter: this interpreter, importing the copy's package.
    bin_dir = copy / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "newsletter"
    shim.write_text(
        f'#!/bin/sh\nPYTHONPATH="{copy}" exec "{sys.executable}" '
        '-c "from newsletter.cli import main; main()" "$@"\n'
    )
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    runs = [
        subprocess.run(
            ["sh", "examples/demo.sh"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
    assert "Sent 5" in runs[0].stdout
    assert "sent already" in runs[1].stdout
    assert len(list((copy / "instance" / "outbox").iterdir())) == 5  # nobody got it twice


def test_commands_without_development_settings_say_how_to_run_on_a_laptop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli_main, ["lists"], obj=CliState())
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET_KEY is not set" in result.output
    assert "NEWSLETTER_ENV=development" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8080, "http://127.0.0.1:8080"),
        ("0.0.0.0", 5001, "http://127.0.0.1:5001"),
        ("localhost", 5000, "http://localhost:5000"),
        ("::1", 8000, "http://[::1]:8000"),
    ],
)
def test_serve_base_url_follows_the_port(host: str, port: int, url: str) -> None:
    assert local_base_url(host, port) == url


def test_serve_in_development_points_links_at_its_port(app, monkeypatch) -> None:
    monkeypatch.delenv("NEWSLETTER_BASE_URL", raising=False)
    app.config["ENV"] = "development"
    monkeypatch.setattr(app, "run", lambda **kwargs: None)
    result = CliRunner().invoke(cli_main, ["serve", "--port", "8123"], obj=CliState(app))
    assert result.exit_code == 0, result.output
    assert app.config["BASE_URL"] == "http://127.0.0.1:8123"
    assert "Links in emails point at http://127.0.0.1:8123" in result.output


def test_serve_keeps_an_explicit_base_url(app, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com")
    app.config["ENV"] = "development"
    monkeypatch.setattr(app, "run", lambda **kwargs: None)
    CliRunner().invoke(cli_main, ["serve", "--port", "8123"], obj=CliState(app))
    assert app.config["BASE_URL"] == "https://news.example.com"


def test_help_lists_every_command_whole() -> None:
    result = CliRunner().invoke(cli_main, ["--help"])
    assert result.exit_code == 0
    for name, (_, line) in COMMANDS.items():
        assert f"{name} " in result.output and line.split()[0] in result.output
    assert "..." not in result.output.split("Commands:")[1]


def test_the_command_table_matches_the_command_modules() -> None:
    """Every module's commands are in newsletter.cli.COMMANDS, and each entry exists."""
    found = {}
    for info in pkgutil.iter_modules(newsletter.cli.__path__):
        module = importlib.import_module(f"newsletter.cli.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            found[command.name] = module.__name__
    assert found == {name: module for name, (module, _) in COMMANDS.items()}
    for name, (_, line) in COMMANDS.items():
        assert line.endswith(".") and len(line) < 80, name


def test_help_of_groups_is_not_cut() -> None:
    for name in COMMANDS:
        command = cli_main.get_command(click.Context(cli_main), name)
        if isinstance(command, click.Group):
            result = CliRunner().invoke(cli_main, [name, "--help"])
            assert result.exit_code == 0
            assert "..." not in result.output.split("Commands:")[1], name
            for sub in command.commands.values():
                first_words = " ".join(help_line(sub).split()[:3])
                assert first_words in " ".join(result.output.split()), (name, sub.name)


def test_help_imports_nothing_heavy() -> None:
    """`newsletter --help` must not import Flask, SQLAlchemy, boto3 or MJML (speed)."""
    code = (
        "import sys; from newsletter.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('flask', 'sqlalchemy', 'boto3', 'mjml', 'premailer', 'babel')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_worker_imports_no_composer(database_url: str, tmp_path: Path) -> None:
    """`newsletter worker --once` sends compiled issues: it must not import the composer's
    MJML, premailer, cssutils or Markdown (a fifth of a second of every worker's start),
    nor the subscriber importer."""
    code = (
        "import sys; from newsletter.cli import main\n"
        "try:\n    main(['worker', '--once'])\nexcept SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "assert 'newsletter.sending.worker' in sys.modules\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('mjml', 'premailer', 'cssutils', 'markdown_it', 'minify_html', 'email_validator')"
        " or m.startswith('newsletter.composer.')"
        # its daily prune needs only the staged uploads, not the importer (~25 ms)
        " or m in ('newsletter.imports.importer', 'newsletter.subscriptions'))\n"
        "print('HEAVY', heavy)\n"
    )
    env = {
        **os.environ,
        "NEWSLETTER_ENV": "development",
        "NEWSLETTER_DATABASE_URL": database_url,
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
