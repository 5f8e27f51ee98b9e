"""The console's subscriber directory at a million subscribers: request latency per page kind.

    .venv/bin/python bench/subscriber_pages.py [--subscribers 1000000] [--requests 50]

Uses the PostgreSQL database `newsletter_bench_pages` (dropped and re-created), seeded
set-based: every subscriber has one subscription on the list "weekly", ~90% active and
the rest pending, unsubscribed, bounced or complained (the active ones confirmed on one
of 365 days, so the confirmation order has long runs of ties); one name in five is
non-ASCII, and one subscriber in 5,000 is erased; one in 200 is also on a second list,
"monthly". A Flask test client signs in through /admin/login (with its CSRF token) and
times --requests GETs of each page kind, in process (no network, no server threads):
the address order as before, then each sortable column's first, middle and last pages.
A middle page is asked for as its "Next" link gives it (with its signed position) and,
for the address and name orders, also as a bare cursor (an old bookmark: counted).
"""

from __future__ import annotations

import argparse
import html
import re
import statistics
import time

import benchsetup as bs
import sqlalchemy as sa

from newsletter import accounts
from newsletter import create_app
from newsletter.db import make_engine

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
EMAIL = "editor@example.com"
PASSWORD = "bench-password-0123456789"


def seed(url: str, count: int) -> None:
    """One list, `count` subscribers, one subscription each, set-based in SQL."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO mailing_list (slug, name, from_address, postal_address, created_at) "
                "VALUES ('weekly', 'Weekly news', 'news@example.com', '1 Example Street', now())"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO subscriber (email, display_email, name, created_at) "
                "SELECT 'r' || g || '@example.com', 'r' || g || '@example.com', "
                "CASE WHEN g % 5 = 0 THEN 'Zoë Łukasz ' || g ELSE 'Reader ' || g END, "
                "now() - make_interval(secs => g) FROM generate_series(1, :n) AS g"
            ),
            {"n": count},
        )
        conn.execute(
            sa.text(
                "INSERT INTO subscription (subscriber_id, list_id, status, created_at, "
                "status_changed_at, source, confirmed_at) SELECT id, "
                "(SELECT id FROM mailing_list WHERE slug = 'weekly'), "
                "CASE WHEN id % 10 <> 0 THEN 'active' "
                "ELSE (ARRAY['unsubscribed', 'bounced', 'complained', 'pending'])"
                "[(id / 10) % 4 + 1] END, now(), now(), 'import', "
                "CASE WHEN id % 10 <> 0 THEN date_trunc('day', now()) "
                "- make_interval(days => ((id::bigint * 7919) % 365)::int) END FROM subscriber"
            )
        )
        # A small second list: one subscriber in 200 is also on "monthly" (5,000 at a
        # million), spread over the whole address range.
        conn.execute(
            sa.text(
                "INSERT INTO mailing_list (slug, name, from_address, postal_address, "
                "created_at) VALUES ('monthly', 'Monthly digest', 'news@example.com', "
                "'1 Example Street', now())"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO subscription (subscriber_id, list_id, status, created_at, "
                "status_changed_at, source) SELECT id, (SELECT id FROM mailing_list "
                "WHERE slug = 'monthly'), 'active', now(), now(), 'import' FROM subscriber "
                "WHERE id % 200 = 7"
            )
        )
        # One in 5,000 erased (GDPR requests), as newsletter.subscribers.erase leaves them.
        conn.execute(
            sa.text(
                "UPDATE subscriber SET email = 'erased-' || id || '@erased.invalid', "
                "display_email = 'erased-' || id || '@erased.invalid', name = NULL, "
                "erased_at = now() WHERE id % 5000 = 0"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


# The middle row of each order, as SQL over the live records (the list orders: on weekly).
MIDDLES = {
    "address": "SELECT id FROM subscriber WHERE erased_at IS NULL ORDER BY email",
    "name": "SELECT id FROM subscriber WHERE erased_at IS NULL AND name IS NOT NULL "
    "ORDER BY name, id",
    "since": "SELECT id FROM subscriber WHERE erased_at IS NULL ORDER BY created_at DESC, id DESC",
    "status": "SELECT s.id FROM subscription JOIN subscriber s ON s.id = subscriber_id "
    "WHERE list_id = (SELECT id FROM mailing_list WHERE slug = 'weekly') AND erased_at IS NULL "
    "ORDER BY status, subscriber_id",
}


def middle(url: str, key: str) -> tuple[int, int]:
    """The id at the middle of an order, and where the page after it starts (1-based)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        half = conn.scalar(sa.text("SELECT count(*) / 2 FROM subscriber WHERE erased_at IS NULL"))
        found = conn.scalar(sa.text(f"{MIDDLES[key]} OFFSET :half LIMIT 1"), {"half": half})
    engine.dispose()
    return found, half + 2  # the row itself is at half + 1


def next_link(app, key: str, direction: str, cursor: int, position: int, query: str) -> str:
    """A "Next" link as the page before it would give it: the cursor and its signed position."""
    from newsletter import directory
    from newsletter.web.admin import subscribers as view

    order = directory.Order(key, direction == "desc")
    args = {**dict(p.split("=") for p in query.split("&") if p), **view._order_args(order)}
    with app.test_request_context():
        token = view._position_token("after", cursor, args, directory.Position(position))
    return f"/admin/subscribers?{query}sort={key}&dir={direction}&after={cursor}&at={token}"


def link(body: str, rel: str) -> str:
    match = re.search(rf'href="([^"]+)" rel="{rel}"', body)
    assert match, f"no {rel} link on the page"
    return html.unescape(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    url = bs.fresh_database("newsletter_bench_pages")
    started = time.perf_counter()
    seed(url, args.subscribers)
    print(f"seeded {args.subscribers} subscribers in {time.perf_counter() - started:.1f} s")

    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": bs.SECRET,
            "BASE_URL": "http://localhost",
            "TESTING": True,
            "WTF_CSRF_ENABLED": True,
            "MAIL_BACKEND": "outbox",
            "OUTBOX_DIR": "/tmp/bench-outbox",
        }
    )
    database = app.extensions["newsletter.db"]
    with database.transaction() as session:
        accounts.create_user(session, EMAIL, PASSWORD)
    client = app.test_client()
    token = CSRF.search(client.get("/admin/login").get_data(as_text=True)).group(1)
    response = client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code in (302, 303), response.status_code

    def last_of(path: str) -> str:
        return link(client.get(path).get_data(as_text=True), "last")

    middles = {key: middle(url, key) for key in MIDDLES}
    address_id, address_at = middles["address"]
    pages = {
        "first page": "/admin/subscribers",
        "middle page (Next link)": next_link(app, "address", "asc", address_id, address_at, ""),
        "middle page (bare ?after=<id>)": f"/admin/subscribers?after={address_id}",
        "last page": last_of("/admin/subscribers"),
        "search ?q=12345": "/admin/subscribers?q=12345",
        "search ?q=Zoë Łukasz 77": "/admin/subscribers?q=Zo%C3%AB+%C5%81ukasz+77",
        "list=weekly&status=unsubscribed": "/admin/subscribers?list=weekly&status=unsubscribed",
        "list=monthly (5,000 subscribers)": "/admin/subscribers?list=monthly",
        "status=erased": "/admin/subscribers?status=erased",
        "list=weekly (all of them)": "/admin/subscribers?list=weekly",
        "list=weekly&status=erased (200)": "/admin/subscribers?list=weekly&status=erased",
    }
    for key, direction, query in (
        ("name", "asc", ""),
        ("since", "desc", ""),
        ("status", "asc", "list=weekly&"),
    ):
        first = f"/admin/subscribers?{query}sort={key}&dir={direction}"
        cursor, position = middles[key]
        pages[f"{key} {direction}: first"] = first
        pages[f"{key} {direction}: middle (Next link)"] = next_link(
            app, key, direction, cursor, position, query
        )
        if key == "name":
            pages[f"{key} {direction}: middle (bare)"] = f"{first}&after={cursor}"
        pages[f"{key} {direction}: last"] = last_of(first)
    pages.update(
        {
            "confirmed desc: first (list=weekly)": (
                "/admin/subscribers?list=weekly&sort=confirmed&dir=desc"
            ),
            "confirmed desc: last (list=weekly)": last_of(
                "/admin/subscribers?list=weekly&sort=confirmed&dir=desc"
            ),
            "name asc, list=monthly": "/admin/subscribers?list=monthly&sort=name",
            "since desc, ?q=Zoë Łukasz 77": (
                "/admin/subscribers?q=Zo%C3%AB+%C5%81ukasz+77&sort=since&dir=desc"
            ),
            "name desc, list=weekly&status=unsubscribed": (
                "/admin/subscribers?list=weekly&status=unsubscribed&sort=name&dir=desc"
            ),
        }
    )
    print(f"\n{'page':<44} {'rows':>5} {'p50 ms':>8} {'p99 ms':>8}  position")
    for label, path in pages.items():
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = client.get(path)
            body = response.get_data(as_text=True)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        rows = body.count("<tr>") - 1  # less the header row
        assert rows > 0, (path, "no rows")
        times.sort()
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        shown = re.search(r'class="range">([^<]+)</strong>', body)
        where = html.unescape(shown.group(1)) if shown else "-"
        median, label = statistics.median(times), label[:44]
        print(f"{label:<44} {rows:>5} {median:>8.1f} {p99:>8.1f}  {where}", flush=True)
    database.dispose()


if __name__ == "__main__":
    main()
