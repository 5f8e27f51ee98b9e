"""Planning and starting a send: check and compile an issue, count its audience, store it.

Also the editor's actions on a stored send: find it, resume it, queue unknown rows again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter.db import rowcount
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.lists import get_list
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.sending.ledger import cancel_queued
from newsletter.sending.ledger import create_ledger


class SendError(NewsletterError):
    """A send cannot be started or changed as asked."""


class WorkerBusy(SendError):
    """SQLite allows one worker, and another one is running."""


@dataclass
class Audience:
    """Who a send would reach right now."""

    active: int
    suppressed: int

    @property
    def recipients(self) -> int:
        return self.active - self.suppressed


@dataclass
class SendPlan:
    """A checked, compiled issue and where it would go; nothing stored yet."""

    compiled: Any  # newsletter.composer.CompiledIssue
    mailing_list: MailingList
    audience: Audience
    existing: Issue | None  # the same issue (list + slug) sent or started before
    # The editor accepts that Gmail clips it (--allow-clipping, the console's checkbox).
    allow_clipping: bool = False


def web_url(base_url: str, slug: str) -> str:
    """Return the public web version's URL of an issue."""
    return f"{base_url}/archive/{slug}"


def count_audience(session: so.Session, mailing_list: MailingList) -> Audience:
    """Count the list's active readers, and how many of them are on the suppression list."""
    active = (
        sa.select(Subscriber.email)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.list_id == mailing_list.id,
            Subscription.status == SubscriptionStatus.ACTIVE,
        )
        .subquery()
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(active)) or 0
    suppressed = (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(active)
            .join(Suppression, Suppression.email == active.c.email)
        )
        or 0
    )
    return Audience(active=total, suppressed=suppressed)


def plan_send(session: so.Session, path: str | Path, list_slug: str, *, base_url: str) -> SendPlan:
    """Check and compile an issue file for a list and count its audience (writes nothing)."""
    from newsletter.composer import load_issue

    mailing_list = get_list(session, list_slug)
    return _plan(session, load_issue(path), mailing_list, base_url)


def plan_send_text(
    session: so.Session,
    text: str,
    list_slug: str,
    *,
    base_url: str,
    source_name: str = "<issue>",
) -> SendPlan:
    """Like plan_send, for YAML text (pasted or uploaded); errors name source_name and line."""
    from newsletter.composer import load_issue_text

    mailing_list = get_list(session, list_slug)
    return _plan(session, load_issue_text(text, filename=source_name), mailing_list, base_url)


def _plan(session: so.Session, document: Any, mailing_list: MailingList, base_url: str) -> SendPlan:
    from newsletter.composer import compile_issue

    compiled = compile_issue(document, mailing_list, base_url=base_url)
    existing = session.scalar(
        sa.select(Issue).where(Issue.list_id == mailing_list.id, Issue.slug == compiled.slug)
    )
    return SendPlan(
        compiled=compiled,
        mailing_list=mailing_list,
        audience=count_audience(session, mailing_list),
        existing=existing,
    )


def check_can_send(plan: SendPlan, *, allow_clipping: bool | None = None) -> None:
    """Refuse a send that was done before, that would reach nobody, or that Gmail would clip.

    A clipped issue hides its footer (unsubscribe link, postal address): it goes out only
    when the editor says so (allow_clipping).
    """
    from newsletter.composer import ClippedIssue
    from newsletter.composer import check_clipping

    if allow_clipping is not None:
        plan.allow_clipping = allow_clipping
    try:
        check_clipping(plan.compiled, allow_clipping=plan.allow_clipping)
    except ClippedIssue as exc:
        raise SendError(str(exc)) from None
    issue = plan.existing
    if issue is None and plan.audience.recipients == 0:
        raise SendError(
            f"The list {plan.mailing_list.slug!r} has no active readers: nothing to send."
        )
    if issue is not None and issue.status in (IssueStatus.SENT, IssueStatus.CANCELLED):
        raise SendError(
            f"Issue {issue.slug!r} was already sent to {plan.mailing_list.slug!r} "
            f"({issue.status.value}). Give the new issue another slug to send it."
        )


def start_send(session: so.Session, plan: SendPlan, *, at: datetime | None = None) -> Issue:
    """Store the compiled issue and its ledger (or schedule it); resume an interrupted send."""
    now = clock.now()
    check_can_send(plan)
    issue = plan.existing
    if issue is not None:
        if issue.status is IssueStatus.SENDING:
            return issue
        # Paused, scheduled or draft: carry on with the version stored first.
        issue.paused_reason = None
        issue.resume_at = None
    else:
        compiled = plan.compiled
        issue_date = compiled.issue_date
        if not isinstance(issue_date, datetime):
            issue_date = datetime(
                issue_date.year, issue_date.month, issue_date.day, tzinfo=now.tzinfo
            )
        issue = Issue(
            list_id=plan.mailing_list.id,
            slug=compiled.slug,
            title=compiled.title,
            subject=compiled.subject,
            preheader=compiled.preheader,
            issue_date=issue_date,
            status=IssueStatus.DRAFT,
            source_yaml=compiled.source_yaml,
            compiled_html=compiled.html,
            compiled_text=compiled.text,
        )
        session.add(issue)
    if at is not None and at > now:
        issue.status = IssueStatus.SCHEDULED
        issue.scheduled_at = at
        session.flush()
        return issue
    issue.status = IssueStatus.SENDING
    issue.started_at = issue.started_at or now
    session.flush()
    create_ledger(session, issue)
    return issue


def find_issue(session: so.Session, ref: str | int) -> Issue:
    """Return an issue by id or slug (the newest with that slug), or raise NotFound."""
    text = str(ref).strip()
    issue = None
    # Always read afresh: the editor acts on the send as it stands now, not as this
    # session last saw it (a worker may have finished or paused it meanwhile).
    if text.isdigit():
        issue = session.get(Issue, int(text), populate_existing=True)
    if issue is None:
        issue = session.scalar(
            sa.select(Issue)
            .where(Issue.slug == text)
            .order_by(Issue.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
    if issue is None:
        raise NotFound(f"There is no issue {text!r}. `newsletter status` lists them.")
    return issue


def resume_issue(session: so.Session, ref: str | int) -> Issue:
    """Let a paused send go on (after the editor fixed what paused it)."""
    issue = find_issue(session, ref)
    if issue.status is not IssueStatus.PAUSED:
        raise SendError(f"Issue {issue.slug!r} is {issue.status.value}, not paused.")
    issue.status = IssueStatus.SENDING
    issue.paused_reason = None
    issue.resume_at = None
    session.flush()
    return issue


def retry_unknown(session: so.Session, ref: str | int) -> tuple[Issue, int]:
    """Queue the issue's `unknown` rows again (the editor accepts a possible second copy)."""
    return _requeue(session, find_issue(session, ref), DeliveryStatus.UNKNOWN)


def retry_failed(session: so.Session, ref: str | int) -> tuple[Issue, int]:
    """Queue the issue's `failed` rows again (SES refused them or never took them: no
    reader can get a second copy), with their attempts counted from zero."""
    return _requeue(session, find_issue(session, ref), DeliveryStatus.FAILED)


def _requeue(session: so.Session, issue: Issue, status: DeliveryStatus) -> tuple[Issue, int]:
    if issue.status is IssueStatus.CANCELLED:
        raise SendError(f"Issue {issue.slug!r} was cancelled: nothing is sent for it any more.")
    values: dict[str, Any] = {
        "status": DeliveryStatus.QUEUED,
        "claimed_by": None,
        "claimed_at": None,
        "retry_at": None,
        "error": None,
        "updated_at": clock.now(),
    }
    if status is DeliveryStatus.FAILED:
        values["attempts"] = 0
    result = session.execute(
        sa.update(Delivery)
        .where(Delivery.issue_id == issue.id, Delivery.status == status)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    count = rowcount(result)
    if count and issue.status is not IssueStatus.SCHEDULED:
        issue.status = IssueStatus.SENDING
        issue.paused_reason = None
        issue.resume_at = None
        issue.finished_at = None
        session.flush()
    return issue, count


CANCELLABLE = (IssueStatus.SCHEDULED, IssueStatus.SENDING, IssueStatus.PAUSED)


def cancel_send(session: so.Session, ref: str | int) -> tuple[Issue, int]:
    """Cancel a scheduled, sending or paused send: nothing more is claimed, and the readers
    not yet sent to are recorded `cancelled`; return the issue and how many they are.

    Messages already in a worker's calls finish and are recorded as usual.
    """
    issue = find_issue(session, ref)
    if issue.status not in CANCELLABLE:
        raise SendError(
            f"Issue {issue.slug!r} is {issue.status.value}: only a scheduled, sending or "
            "paused send can be cancelled."
        )
    issue.status = IssueStatus.CANCELLED
    issue.paused_reason = None
    issue.resume_at = None
    issue.finished_at = clock.now()
    session.flush()
    return issue, cancel_queued(session, [issue.id])
