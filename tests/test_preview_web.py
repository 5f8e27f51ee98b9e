"""The live preview page of the development server (/preview)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "issue.yaml"


@pytest.fixture
def issues(tmp_path: Path) -> Path:
    """A project folder holding a copy of the example issue."""
    folder = tmp_path / "project"
    (folder / "examples").mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / "examples" / "issue.yaml")
    (tmp_path / "secret.yaml").write_text("title: outside\n", encoding="utf-8")
    return folder


@pytest.fixture
def app_config(app_config: dict[str, Any], issues: Path) -> dict[str, Any]:
    app_config.update(ENV="development", PREVIEW_ROOT=str(issues))
    return app_config


def test_preview_is_development_only(app_config, client) -> None:
    client.application.config["ENV"] = "production"
    assert client.get("/preview?file=examples/issue.yaml").status_code == 404
    assert client.get("/preview/html?file=examples/issue.yaml").status_code == 404


def test_index_lists_issue_files(client) -> None:
    response = client.get("/preview")
    assert response.status_code == 200
    assert "examples/issue.yaml" in response.get_data(as_text=True)


def test_page_shows_both_widths_and_the_text_part(client) -> None:
    response = client.get("/preview?file=examples/issue.yaml")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.count("<iframe") == 2
    assert "Desktop (800 px)" in page and "Phone (375 px)" in page
    assert 'src="/static/preview.js"' in page and "<script>" not in page  # CSP: no inline
    assert "o11y news #42: Unlocking the Kernel" in page
    assert "No list in the database: previewing with a placeholder" in page
    assert "Hello," in page  # the text part, with a greeting for a reader without a name
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_frame_serves_the_html_sandboxed(client, make_list) -> None:
    make_list(slug="o11y-news", name="o11y news", postal_address="Rosenthaler Straße 40")
    response = client.get("/preview/html?file=examples/issue.yaml&list=o11y-news")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "Unlocking the Kernel" in html and "Rosenthaler Straße 40" in html
    assert "{{nl:" not in html


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("../secret.yaml", 400),
        ("/etc/passwd", 400),
        ("examples/../../secret.yaml", 400),
        ("examples/missing.yaml", 404),
        ("pyproject.toml", 400),
    ],
)
def test_only_yaml_files_inside_the_project_can_be_previewed(client, name, status) -> None:
    response = client.get("/preview", query_string={"file": name})
    assert response.status_code == status
    assert "outside" not in response.get_data(as_text=True)


def test_errors_are_shown_on_the_page(client, issues: Path) -> None:
    (issues / "examples" / "issue.yaml").write_text("title: T\ndate: soon\n", encoding="utf-8")
    response = client.get("/preview?file=examples/issue.yaml")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2 errors in the issue file" in page
    expected = "examples/issue.yaml:2: date: expected a date like 2023-11-06, got &#39;soon&#39;"
    assert expected in page
    assert "<iframe" not in page


def test_version_changes_when_the_file_changes(client, issues: Path) -> None:
    first = client.get("/preview/version?file=examples/issue.yaml").get_json()["version"]
    path = issues / "examples" / "issue.yaml"
    path.write_text(path.read_text().replace("Unlocking the Kernel", "Kernel news"))
    second = client.get("/preview/version?file=examples/issue.yaml").get_json()["version"]
    assert first != second


@pytest.mark.browser
def test_live_preview_follows_edits_in_chromium(page, live_server: str, issues: Path) -> None:
    page.set_viewport_size({"width": 1300, "height": 900})
    page.route("https://example.com/**", lambda route: route.abort())  # offline images
    page.goto(f"{live_server}/preview?file=examples/issue.yaml")
    frames = page.locator("iframe")
    assert frames.count() == 2
    widths = [frames.nth(i).evaluate("frame => frame.clientWidth") for i in range(2)]
    assert widths == [800, 375]  # the issue sees exactly a desktop and a phone width
    boxes = [frames.nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["x"] + boxes[0]["width"] < boxes[1]["x"]  # side by side
    phone = page.frame_locator(".preview-phone iframe")
    assert phone.locator("h1").inner_text() == "Unlocking the Kernel"

    path = issues / "examples" / "issue.yaml"
    path.write_text(path.read_text().replace("title: Unlocking the Kernel", "title: Kernel news"))
    phone.locator("h1", has_text="Kernel news").wait_for(timeout=10_000)
    desktop = page.frame_locator(".preview-desktop iframe")
    assert desktop.locator("h1").inner_text() == "Kernel news"
