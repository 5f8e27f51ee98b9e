"""The batch's statements in portable SQLAlchemy Core: the store used on SQLite."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.db import dialect_insert
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression

if TYPE_CHECKING:
    from newsletter.imports.batches import Subscribe

# Values per IN (...) list: under SQLite's and PostgreSQL's bind-parameter limits.
_IN_CHUNK = 10_000


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _select_in(
    session: so.Session, query: sa.Select, column: Any, values: Iterable[Any]
) -> list[Any]:
    values = list(values)
    rows: list[Any] = []
    for chunk in _chunks(values):
        rows.extend(session.execute(query.where(column.in_(chunk))).all())
    return rows


def _table(model: type[Any]) -> sa.Table:
    """A model's Table (`__table__` is typed as a FromClause)."""
    return cast(sa.Table, model.__table__)


class SqliteStore:
    """The batch's statements in portable SQLAlchemy Core (SQLite)."""

    def __init__(self, session: so.Session) -> None:
        self.session = session

    def suppressed(self, keys: Sequence[str]) -> set[str]:
        rows = _select_in(self.session, sa.select(Suppression.email), Suppression.email, keys)
        return {row.email for row in rows}

    def add_subscribers(
        self,
        rows: Sequence[tuple[str, str, str | None]],
        now: Any,
        subscribe: Subscribe | None = None,
    ) -> list[tuple[int, str, str | None, bool]]:
        """Insert the missing subscribers; return (id, email, name, new) for the ones found.

        `new` is True only for rows this statement inserted (they have no subscriptions)
        and, with `subscribe`, subscribed in the same step; a subscriber it does not return
        was added by a concurrent transaction. This portable version never says `new`:
        every subscriber goes through the status lookup.
        """
        subscriber = _table(Subscriber)
        self.session.execute(
            dialect_insert(self.session, subscriber).on_conflict_do_nothing(
                index_elements=["email"]
            ),
            [
                {"email": key, "display_email": display, "name": name, "created_at": now}
                for key, display, name in rows
            ],
        )
        return [(*row, False) for row in self.subscribers([key for key, _, _ in rows])]

    def subscribers(self, keys: Sequence[str]) -> list[tuple[int, str, str | None]]:
        subscriber = _table(Subscriber)
        query = sa.select(subscriber.c.id, subscriber.c.email, subscriber.c.name)
        return [tuple(row) for row in _select_in(self.session, query, subscriber.c.email, keys)]

    def fill_names(self, pairs: Sequence[tuple[int, str]]) -> None:
        subscriber = _table(Subscriber)
        self.session.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == sa.bindparam("b_id"), subscriber.c.name.is_(None))
            .values(name=sa.bindparam("b_name")),
            [{"b_id": sid, "b_name": name} for sid, name in pairs],
        )

    def statuses(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        subscription = _table(Subscription)
        query = sa.select(subscription.c.subscriber_id, subscription.c.status).where(
            subscription.c.list_id == list_id
        )
        return dict(_select_in(self.session, query, subscription.c.subscriber_id, ids))

    def subscribe_active(self, list_id: int, ids: Sequence[int], label: str, now: Any) -> set[int]:
        subscription = _table(Subscription)
        created = self.session.execute(
            dialect_insert(self.session, subscription)
            .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
            .returning(subscription.c.id, subscription.c.subscriber_id),
            [
                {
                    "subscriber_id": subscriber_id,
                    "list_id": list_id,
                    "status": SubscriptionStatus.ACTIVE,
                    "created_at": now,
                    "status_changed_at": now,
                    "confirmed_at": now,
                    "unsubscribed_at": None,
                    "source": "import",
                    "consent_at": now,
                    "consent_ip": None,
                    "consent_form": label,
                    "confirm_nonce": None,
                }
                for subscriber_id in ids
            ],
        ).all()
        if created:
            self.session.execute(
                sa.insert(_table(SubscriptionEvent)),
                [
                    {
                        "subscription_id": row.id,
                        "status": SubscriptionStatus.ACTIVE,
                        "at": now,
                        "reason": "import",
                        "ip": None,
                    }
                    for row in created
                ],
            )
        return {row.subscriber_id for row in created}
