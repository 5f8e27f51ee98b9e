"""The sends on the issues page are paged like the subscriber directory: one pager, "3–4 of 5"."""

from __future__ import annotations

import html as html_module
import re
from typing import Any

import pytest


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["ADMIN_SENDS_PAGE_SIZE"] = 2
    return app_config


@pytest.fixture
def five_sends(make_ledger) -> list[str]:
    """Five sent issues, oldest first; returns their subjects."""
    return [make_ledger([f"r{n}@example.com"])[0].subject for n in range(5)]


def _text(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return html_module.unescape(response.get_data(as_text=True))


def _subjects(html: str) -> list[str]:
    table = html.split('class="table issue-figures', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<a href="/admin/issues/\d+">([^<]+)</a>', table)


def _range(html: str) -> str:
    found = re.search(r'<p class="result-count" id="sends-count">(.*?)</p>', html, re.S)
    assert found, "no count of the sends"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


def _link(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return html_module.unescape(match.group(1)) if match else None


def test_sends_are_paged_newest_first_with_their_position(admin_client, five_sends):
    newest_first = list(reversed(five_sends))
    first = _text(admin_client.get("/admin/issues"))
    assert _subjects(first) == newest_first[:2]
    assert _range(first) == "1–2 of 5 sends"
    assert _link(first, "prev") is None
    second = _text(admin_client.get(_link(first, "next")))
    assert _subjects(second) == newest_first[2:4]
    assert _range(second) == "3–4 of 5 sends"
    third = _text(admin_client.get(_link(second, "next")))
    assert _subjects(third) == newest_first[4:]
    assert _range(third) == "5–5 of 5 sends"
    assert _link(third, "next") is None
    last = _text(admin_client.get(_link(first, "last")))
    assert _subjects(last) == newest_first[3:]
    assert _range(last) == "4–5 of 5 sends"
    back = _text(admin_client.get(_link(last, "prev")))
    assert _subjects(back) == newest_first[1:3]
    assert _range(back) == "2–3 of 5 sends"
    assert _subjects(_text(admin_client.get(_link(back, "first")))) == newest_first[:2]


def test_one_page_of_sends_has_no_pager(admin_client, make_ledger):
    make_ledger(["a@example.com"])
    html = _text(admin_client.get("/admin/issues"))
    assert _range(html) == "1–1 of 1 send"
    assert 'class="pager"' not in html


@pytest.mark.parametrize(
    "query", ["after=x", "before=-1", "after=1&before=2", "after=" + "9" * 40, "before=%C2%B2"]
)
def test_a_damaged_sends_page_link_is_a_clear_400(admin_client, five_sends, query):
    response = admin_client.get(f"/admin/issues?{query}")
    assert response.status_code == 400
    assert "This page link is damaged" in html_module.unescape(response.get_data(as_text=True))


def test_a_cursor_past_the_end_says_so_with_a_way_back(admin_client, five_sends):
    html = _text(admin_client.get("/admin/issues?after=1"))
    assert 'class="table issue-figures' not in html
    assert "No sends on this page (an old link?)" in html
    assert '<a href="/admin/issues">See the newest</a>' in html


@pytest.mark.parametrize("page", ["/admin/issues", "/admin/subscribers"])
def test_a_cursor_past_every_id_is_no_500(admin_client, five_sends, page):
    # Twelve digits pass as a cursor, but no INTEGER id is that large (PostgreSQL refused).
    for query in ("after=99999999999", "before=99999999999"):
        response = admin_client.get(f"{page}?{query}")
        assert response.status_code == 200, query
