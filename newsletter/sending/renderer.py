"""The message renderer: an issue compiled once, personalised per reader; test copies."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import tokens
from newsletter.lists import list_id_header
from newsletter.mail import Mailer
from newsletter.mail import MailerError
from newsletter.mail import OutgoingMessage
from newsletter.models import Issue
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.sending.plan import SendError
from newsletter.sending.plan import SendPlan
from newsletter.wire import EncodedBody
from newsletter.wire import MessageTemplate

TEST_PREFIX = "[TEST] "


def web_url(base_url: str, slug: str) -> str:
    """Return the public web version's URL of an issue."""
    return f"{base_url}/archive/{slug}"


class IssueRenderer:
    """An issue compiled once, personalised per reader (unsubscribe link, name)."""

    def __init__(
        self,
        *,
        issue_id: int | None,
        slug: str,
        subject: str,
        html: str,
        text: str,
        mailing_list: MailingList,
        base_url: str,
        secret_key: str,
        mailto_domain: str | None = None,
    ) -> None:
        self.issue_id = issue_id
        self.mailto_domain = mailto_domain
        self.subject = subject
        self.html = html
        self.text = text
        self.base_url = base_url
        self.secret_key = secret_key
        self.web_url = web_url(base_url, slug)
        self.from_address = mailing_list.from_address
        self.from_name = mailing_list.name
        self.reply_to = mailing_list.reply_to
        self.list_slug = mailing_list.slug
        self.list_id = list_id_header(mailing_list, base_url)
        self._templates: dict[str, MessageTemplate] = {}
        self._bodies: tuple[EncodedBody, EncodedBody] | None = None

    @classmethod
    def for_issue(cls, issue: Issue, mailing_list: MailingList, config: Mapping[str, Any]):
        """Build the renderer for a stored issue."""
        return cls(
            issue_id=issue.id,
            slug=issue.slug,
            subject=issue.subject,
            html=issue.compiled_html,
            text=issue.compiled_text,
            mailing_list=mailing_list,
            base_url=config["BASE_URL"],
            secret_key=config["SECRET_KEY"],
            mailto_domain=config.get("UNSUBSCRIBE_MAILTO_DOMAIN"),
        )

    def _encoded_bodies(self) -> tuple[EncodedBody, EncodedBody]:
        # Encoded once per issue (two threads may both do it at first: same result).
        if self._bodies is None:
            from newsletter.composer.placeholders import template_for

            self._bodies = (
                EncodedBody(*template_for(self.text, "email")),
                EncodedBody(*template_for(self.html, "email")),
            )
        return self._bodies

    def message(
        self,
        *,
        email: str,
        name: str | None,
        subscription_id: int | None,
        delivery_id: int | None = None,
        subject_prefix: str = "",
    ) -> OutgoingMessage:
        """Return one reader's message with their own unsubscribe link and SES tags."""
        from newsletter.composer.placeholders import reader_values

        mailto = None
        if subscription_id is not None:
            unsubscribe = tokens.unsubscribe_url(self.base_url, self.secret_key, subscription_id)
            if self.mailto_domain:
                mailto = tokens.unsubscribe_mailto(
                    self.mailto_domain, self.secret_key, subscription_id
                )
        else:
            # A test copy to someone who is not on the list: the link leads to a polite 4xx.
            unsubscribe = f"{self.base_url}/u/test-copy"
        html_values, text_values = reader_values(
            unsubscribe_url=unsubscribe, web_url=self.web_url, name=name
        )
        text_body, html_body = self._encoded_bodies()
        # Tags are the contract with bounce handling: SES returns them in every event.
        tags = {"list": self.list_slug}
        if self.issue_id is not None and delivery_id is not None:
            tags["issue"] = str(self.issue_id)
            tags["delivery"] = str(delivery_id)
        else:
            tags["test"] = "true"
        template = self._templates.get(subject_prefix)
        if template is None:
            template = self._templates[subject_prefix] = MessageTemplate(
                from_address=self.from_address,
                from_name=self.from_name,
                subject=f"{subject_prefix}{self.subject}",
                reply_to=self.reply_to,
                list_id=self.list_id,
            )
        return template.fill(
            to_address=email,
            to_name=name,
            unsubscribe_url=unsubscribe,
            unsubscribe_mailto=mailto,
            text=text_body.fill_chunks(text_values),
            html=html_body.fill_chunks(html_values),
            tags=tags,
        )


def _active_reader(session: so.Session, mailing_list: MailingList, key: str) -> Any:
    """Return (subscription id, name) of the address's active subscription to the list."""
    return session.execute(
        sa.select(Subscription.id, Subscriber.name)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscriber.email == key,
            Subscription.list_id == mailing_list.id,
            Subscription.status == SubscriptionStatus.ACTIVE,
        )
    ).first()


def preview_for_reader(
    session: so.Session, plan: SendPlan, address: str, *, config: Mapping[str, Any]
) -> tuple[str, str]:
    """Return the HTML and text the address would get: its own links, else a test copy's."""
    from newsletter.addresses import InvalidAddress
    from newsletter.addresses import normalize_address
    from newsletter.composer import render_for_reader

    base_url = config["BASE_URL"]
    try:
        key = normalize_address(address).key
    except InvalidAddress:
        row = None
    else:
        row = _active_reader(session, plan.mailing_list, key)
    if row is not None:
        unsubscribe = tokens.unsubscribe_url(base_url, config["SECRET_KEY"], row.id)
    else:
        unsubscribe = f"{base_url}/u/test-copy"
    compiled = plan.compiled
    return render_for_reader(
        compiled.html,
        compiled.text,
        unsubscribe_url=unsubscribe,
        web_url=web_url(base_url, compiled.slug),
        name=row.name if row else None,
    )


def send_test_copies(
    session: so.Session,
    mailer: Mailer,
    plan: SendPlan,
    addresses: Iterable[str],
    *,
    config: Mapping[str, Any],
) -> list[str]:
    """Send "[TEST]" copies to the given addresses only; nothing is recorded in the ledger."""
    from newsletter.addresses import InvalidAddress
    from newsletter.addresses import normalize_address

    compiled = plan.compiled
    renderer = IssueRenderer(
        issue_id=None,
        slug=compiled.slug,
        subject=compiled.subject,
        html=compiled.html,
        text=compiled.text,
        mailing_list=plan.mailing_list,
        base_url=config["BASE_URL"],
        secret_key=config["SECRET_KEY"],
        mailto_domain=config.get("UNSUBSCRIBE_MAILTO_DOMAIN"),
    )
    messages = []
    for raw in addresses:
        try:
            address = normalize_address(raw)
        except InvalidAddress as exc:
            raise SendError(f"--test-to {raw!r}: {exc}") from None
        if session.scalar(sa.select(Suppression.id).where(Suppression.email == address.key)):
            raise SendError(f"{address.display} is on the suppression list; it is never mailed.")
        row = _active_reader(session, plan.mailing_list, address.key)
        messages.append(
            renderer.message(
                email=address.ascii,
                name=row.name if row else None,
                subscription_id=row.id if row else None,
                subject_prefix=TEST_PREFIX,
            )
        )
    try:
        return [mailer.send(message) for message in messages]
    except MailerError as exc:
        raise SendError(f"The test copy could not be sent: {exc}") from None
