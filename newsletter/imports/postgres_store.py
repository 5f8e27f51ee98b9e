"""The batch's statements for PostgreSQL: one statement a step, values joined into strings."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import sqlalchemy as sa

from newsletter.imports.sqlite_store import SqliteStore
from newsletter.models import SubscriptionStatus

if TYPE_CHECKING:
    from newsletter.imports.batches import Subscribe


# PostgreSQL: each step is one statement whose values travel as a few long strings, split
# on the server with string_to_array. Multi-row VALUES lists or IN lists of thousands of
# placeholders cost more to build and parse than storing the rows does, and psycopg
# dumps list parameters element by element in Python; one joined string is one C call.
# Lookups probe the unique index once per value, in a LATERAL subquery, rather than join
# or "= ANY(array)": a join's plan rests on the table's statistics, and a table an import
# is filling has none worth the name until it is analyzed (never, with autovacuum off).
# Seen: a merge join that sorted all 1,000,000 subscribers for each batch of 5,000 (740 ms
# a batch), and "list_id = $1 AND subscriber_id = ANY($2)" scanning a whole list.
_SEPARATOR = "\x1f"  # ASCII unit separator: never in a checked address or name
_NULL = "\x1e"  # stands for None


def _texts(values: Iterable[str | None]) -> str:
    """Join strings for string_to_array(:p, chr(31), chr(30)) (None travels as chr(30))."""
    items = [_NULL if value is None else value for value in values]
    joined = _SEPARATOR.join(items)
    if items and joined.count(_SEPARATOR) != len(items) - 1:
        raise ValueError("a value contains the separator")  # check_row refuses them
    return joined


def _ints(values: Iterable[int]) -> str:
    return ",".join(map(str, values))


_TEXTS = "string_to_array(CAST(:{} AS text), chr(31), chr(30))"
_IDS = "CAST(string_to_array(CAST(:{} AS text), ',') AS bigint[])"

# One index probe per key of t(k), whatever the statistics say (see above).
_PROBE_SUBSCRIBER = (
    "CROSS JOIN LATERAL (SELECT s.id, s.email, s.name FROM subscriber AS s "
    "WHERE s.email = t.{} LIMIT 1) AS s"
)
_PG_SUPPRESSED = sa.text(
    f"SELECT s.email FROM unnest({_TEXTS.format('keys')}) AS t(k) "
    "CROSS JOIN LATERAL (SELECT s.email FROM suppression AS s WHERE s.email = t.k LIMIT 1) AS s"
)
# The rows inserted (their names are the file's: not sent back), then the ones that were
# there before (the SELECT sees the snapshot from before the INSERT; only the rows not
# inserted are looked up): one round trip, and new subscribers need no status lookup.
_ADD_SUBSCRIBERS = (
    f"WITH t AS (SELECT * FROM unnest({_TEXTS.format('emails')}, {_TEXTS.format('displays')}, "
    f"{_TEXTS.format('names')}) AS t(e, d, n)), "
    "added AS (INSERT INTO subscriber (email, display_email, name, created_at) "
    "SELECT e, d, n, :now FROM t ON CONFLICT (email) DO NOTHING RETURNING id, email)"
)
_ADDED_AND_FOUND = (
    "SELECT id, email, CAST(NULL AS text), true FROM added "
    f"UNION ALL SELECT s.id, s.email, s.name, false FROM t {_PROBE_SUBSCRIBER.format('e')} "
    "WHERE t.e NOT IN (SELECT email FROM added)"
)
_PG_ADD_SUBSCRIBERS = sa.text(f"{_ADD_SUBSCRIBERS} {_ADDED_AND_FOUND}")
# The same, and the rows it inserts are subscribed, with their events, in the same
# statement. Their subscriptions need no ON CONFLICT: nobody else can see a subscriber
# this transaction has not committed, let alone subscribe it.
_PG_ADD_AND_SUBSCRIBE = sa.text(
    f"{_ADD_SUBSCRIBERS}, "
    "created AS (INSERT INTO subscription (subscriber_id, list_id, status, created_at,"
    " status_changed_at, confirmed_at, source, consent_at, consent_form)"
    " SELECT id, :list_id, :active, :now, :now, :now, 'import', :now, :label FROM added"
    " RETURNING id), "
    "events AS (INSERT INTO subscription_event (subscription_id, status, at, reason)"
    f" SELECT id, :active, :now, 'import' FROM created) {_ADDED_AND_FOUND}"
)
_PG_SUBSCRIBERS = sa.text(
    f"SELECT s.id, s.email, s.name FROM unnest({_TEXTS.format('keys')}) AS t(k) "
    f"{_PROBE_SUBSCRIBER.format('k')}"
)
_PG_FILL_NAMES = sa.text(
    "UPDATE subscriber AS s SET name = t.n "
    f"FROM unnest({_IDS.format('ids')}, {_TEXTS.format('names')}) AS t(i, n) "
    "WHERE s.id = t.i AND s.name IS NULL"
)
_PG_STATUSES = sa.text(
    f"SELECT s.subscriber_id, s.status FROM unnest({_IDS.format('ids')}) AS t(i) "
    "CROSS JOIN LATERAL (SELECT s.subscriber_id, s.status FROM subscription AS s "
    "WHERE s.subscriber_id = t.i AND s.list_id = :list_id LIMIT 1) AS s"
)
_PG_SUBSCRIBE_ACTIVE = sa.text(
    "WITH created AS ("
    " INSERT INTO subscription (subscriber_id, list_id, status, created_at, status_changed_at,"
    " confirmed_at, source, consent_at, consent_form)"
    " SELECT i, :list_id, :active, :now, :now, :now, 'import', :now, :label"
    f" FROM unnest({_IDS.format('ids')}) AS t(i)"
    " ON CONFLICT (subscriber_id, list_id) DO NOTHING"
    " RETURNING id, subscriber_id"
    "), events AS ("
    " INSERT INTO subscription_event (subscription_id, status, at, reason)"
    " SELECT id, :active, :now, 'import' FROM created"
    ") SELECT subscriber_id FROM created"
)


class PostgresStore(SqliteStore):
    """The same statements with their values joined into strings (PostgreSQL)."""

    def suppressed(self, keys: Sequence[str]) -> set[str]:
        return set(self.session.scalars(_PG_SUPPRESSED, {"keys": _texts(keys)}))

    def add_subscribers(
        self,
        rows: Sequence[tuple[str, str, str | None]],
        now: Any,
        subscribe: Subscribe | None = None,
    ) -> list[tuple[int, str, str | None, bool]]:
        params = {
            "emails": _texts(row[0] for row in rows),
            "displays": _texts(row[1] for row in rows),
            "names": _texts(row[2] for row in rows),
            "now": now,
        }
        statement = _PG_ADD_SUBSCRIBERS
        if subscribe is not None:
            statement = _PG_ADD_AND_SUBSCRIBE
            params.update(
                list_id=subscribe.list_id,
                label=subscribe.label,
                active=SubscriptionStatus.ACTIVE.value,
            )
        result = self.session.execute(statement, params)
        return [(row[0], row[1], row[2], row[3]) for row in result]

    def subscribers(self, keys: Sequence[str]) -> list[tuple[int, str, str | None]]:
        result = self.session.execute(_PG_SUBSCRIBERS, {"keys": _texts(keys)})
        return [(row[0], row[1], row[2]) for row in result]

    def fill_names(self, pairs: Sequence[tuple[int, str]]) -> None:
        params = {"ids": _ints(p[0] for p in pairs), "names": _texts(p[1] for p in pairs)}
        self.session.execute(_PG_FILL_NAMES, params)

    def statuses(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        rows = self.session.execute(_PG_STATUSES, {"list_id": list_id, "ids": _ints(ids)})
        return {row[0]: row[1] for row in rows}

    def subscribe_active(self, list_id: int, ids: Sequence[int], label: str, now: Any) -> set[int]:
        params = {
            "list_id": list_id,
            "ids": _ints(ids),
            "label": label,
            "now": now,
            "active": SubscriptionStatus.ACTIVE.value,
        }
        return set(self.session.scalars(_PG_SUBSCRIBE_ACTIVE, params))
