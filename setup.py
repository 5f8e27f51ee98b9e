"""Build hook: the wheel carries the top-level templates/, static/ and migrations/.

They stay at the top of the checkout (where editors and Alembic expect them); building
the wheel copies them into newsletter/package_data/, where newsletter.config.data_dir
finds them once installed. Editable installs use the checkout's folders directly.
Metadata and dependencies are in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_FOLDERS = ("templates", "static", "migrations")


class BuildWithData(build_py):
    """build_py, then copy the data folders into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "newsletter" / "package_data"
        for name in DATA_FOLDERS:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"cannot build: {source} is missing")
            shutil.copytree(
                source,
                target / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )


setup(cmdclass={"build_py": BuildWithData})
