"""Where the application finds its templates, static files and migrations.

A checkout (editable install) uses its top-level folders; an installed wheel carries them
in newsletter/package_data/ (setup.py copies them there). .ci/wheel-smoke builds the wheel,
installs it outside the checkout and runs it; these tests check the lookup both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter import config
from newsletter import migrations

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["templates", "static", "migrations"])
def test_a_checkout_uses_its_top_level_folders(name: str) -> None:
    assert config.data_dir(name) == ROOT / name
    assert config.default_instance_path() == ROOT / "instance"


def test_an_installed_package_uses_what_the_wheel_carries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = tmp_path / "site-packages" / "newsletter" / "package_data"
    for name in ("templates", "static", "migrations"):
        (packaged / name).mkdir(parents=True)
    monkeypatch.setattr(config, "PACKAGED_DATA", packaged)
    work = tmp_path / "srv"
    work.mkdir()
    monkeypatch.chdir(work)
    assert config.data_dir("templates") == packaged / "templates"
    assert migrations.alembic_config().get_main_option("script_location") == str(
        packaged / "migrations"
    )
    # Never inside site-packages: the working directory's instance/ folder.
    assert config.default_instance_path() == work / "instance"
    loaded = config.load_config({"ENV": "development"}, environ={})
    assert loaded["DATABASE_URL"] == f"sqlite:///{work / 'instance' / 'newsletter.db'}"


def test_the_sdist_carries_what_the_wheel_copies() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text()
    setup = (ROOT / "setup.py").read_text()
    for name in ("templates", "static", "migrations"):
        assert f"graft {name}" in manifest
        assert f'"{name}"' in setup
