"""Database-backed fixed-window rate limits: windows, clean-up, atomic counting."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from newsletter import ratelimits
from newsletter.models import RateLimitCounter


def _hit(app, key="signup-ip:192.0.2.1", limit=3, window=600):
    with app.extensions["newsletter.db"].transaction() as session:
        return ratelimits.hit(session, key, limit=limit, window=window)


def test_counts_within_a_window_and_starts_again_in_the_next(app, clock):
    results = [_hit(app) for _ in range(4)]
    assert [r.count for r in results] == [1, 2, 3, 4]
    assert [r.allowed for r in results] == [True, True, True, False]
    # 09:00:00 is a window boundary for 600 s: the window ends in 600 s.
    assert results[-1].retry_after == 600
    clock.advance(seconds=599)
    assert _hit(app).allowed is False
    clock.advance(seconds=1)
    fresh = _hit(app)
    assert (fresh.count, fresh.allowed, fresh.retry_after) == (1, True, 600)


def test_keys_are_counted_separately(app, clock):
    _hit(app, key="a")
    _hit(app, key="a")
    assert _hit(app, key="b").count == 1
    assert _hit(app, key="a").count == 3


def test_old_windows_of_a_key_are_dropped(app, db_session, clock):
    _hit(app, key="a")
    _hit(app, key="other")
    clock.advance(hours=2)
    _hit(app, key="a")
    rows = db_session.execute(
        sa.select(RateLimitCounter.key, RateLimitCounter.window_start).order_by(
            RateLimitCounter.key
        )
    ).all()
    assert [(key, start) for key, start in rows] == [
        ("a", clock.current),
        ("other", clock.current - timedelta(hours=2)),
    ]
    db_session.rollback()


def test_concurrent_hits_from_many_connections_lose_no_count(app, clock):
    """Separate sessions (as separate web processes would) hit one key at the same time."""
    threads, results = 12, []
    barrier = threading.Barrier(threads)
    lock = threading.Lock()

    def worker():
        barrier.wait()
        for _ in range(5):
            result = _hit(app, key="busy", limit=1000)
            with lock:
                results.append(result.count)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    # Every increment returned a distinct count: none was lost or read twice.
    assert sorted(results) == list(range(1, threads * 5 + 1))
