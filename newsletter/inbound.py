"""Mail received through SES receiving: `mailto:` unsubscribe requests (RFC 2369, 8058).

With NEWSLETTER_UNSUBSCRIBE_MAILTO_DOMAIN set, every issue's List-Unsubscribe also offers
`<mailto:u+TOKEN@DOMAIN>`. An SES receipt rule for that domain publishes each incoming
mail to the SNS topic the webhook already verifies (notificationType "Received"); for
every recipient u+TOKEN@DOMAIN whose token checks out, the subscription is unsubscribed
exactly as the one-click POST does it (subscriptions.unsubscribe; idempotent). What the
mail says does not matter (mail clients send an empty or fixed body): the token is the
authority, as it is in the URL. Forged tokens, other domains and mail SES marked as a
virus change nothing. docs/bounces.md has the AWS set-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy.orm as so

from newsletter import subscriptions
from newsletter import tokens

log = logging.getLogger(__name__)

RECEIVED = "Received"


@dataclass(frozen=True)
class InboundResult:
    """What one received mail did."""

    unsubscribed: int  # subscriptions that left (or had left already: idempotent)
    refused: int  # recipients on our domain whose token did not check out


def _recipients(payload: dict[str, Any]) -> list[str]:
    receipt = payload.get("receipt")
    found = receipt.get("recipients") if isinstance(receipt, dict) else None
    if not isinstance(found, list):
        mail = payload.get("mail")
        found = mail.get("destination") if isinstance(mail, dict) else None
    return [r for r in found or [] if isinstance(r, str)][:50]


def _virus(payload: dict[str, Any]) -> bool:
    receipt = payload.get("receipt")
    verdict = receipt.get("virusVerdict") if isinstance(receipt, dict) else None
    return isinstance(verdict, dict) and verdict.get("status") == "FAIL"


def apply_received(
    session: so.Session, payload: dict[str, Any], *, secret_key: str, domain: str | None
) -> InboundResult:
    """Unsubscribe every u+TOKEN@domain recipient of a received mail whose token is valid."""
    if not domain:
        log.warning("received mail ignored: NEWSLETTER_UNSUBSCRIBE_MAILTO_DOMAIN is not set")
        return InboundResult(0, 0)
    if _virus(payload):
        log.warning("received mail ignored: SES found a virus in it")
        return InboundResult(0, 0)
    done = refused = 0
    config = {"SECRET_KEY": secret_key}
    for recipient in _recipients(payload):
        token = tokens.token_from_mailto_address(recipient, domain)
        if token is None:
            continue  # another address of the domain: not ours to read
        try:
            with session.begin_nested():
                subscriptions.unsubscribe(session, token, reason="mailto", ip=None, config=config)
        except (tokens.InvalidToken, subscriptions.SubscriptionGone) as exc:
            refused += 1
            log.warning("mailto unsubscribe to %s refused: %s", recipient, exc)
            continue
        done += 1
    return InboundResult(done, refused)
