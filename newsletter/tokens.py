"""Signed tokens: expiring single-use confirmation links and short, lasting unsubscribe links."""

from __future__ import annotations

import secrets
import string

from itsdangerous import BadSignature
from itsdangerous import BadTimeSignature
from itsdangerous import SignatureExpired
from itsdangerous import Signer
from itsdangerous import URLSafeTimedSerializer

from newsletter.errors import NewsletterError
from newsletter.i18n import N_

CONFIRM_SALT = "newsletter.confirm.v1"
UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v1"
_ALPHABET = string.digits + string.ascii_lowercase
CONFIRM_LINK_DAMAGED = N_(
    "This confirmation link is not valid. Copy the whole link from the email into your "
    "browser, or sign up again."
)
UNSUBSCRIBE_LINK_DAMAGED = N_(
    "This unsubscribe link is not valid. Copy the whole link from the email into your "
    "browser, or use the unsubscribe link of another issue."
)


class InvalidToken(NewsletterError):
    """The link is forged, damaged, expired or already used."""


class ExpiredToken(InvalidToken):
    """A genuine confirmation link, too old: the reader can sign up again."""

    def __init__(self, message: str, subscription_id: int | None) -> None:
        super().__init__(message)
        self.subscription_id = subscription_id


def new_nonce() -> str:
    """Return a fresh random nonce for a confirmation link."""
    return secrets.token_urlsafe(12)


def make_confirm_token(secret_key: str, subscription_id: int, nonce: str) -> str:
    """Sign a confirmation token for one subscription; it is checked against the nonce."""
    return URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT).dumps([subscription_id, nonce])


def read_confirm_token(secret_key: str, token: str, max_age: int) -> tuple[int, str]:
    """Return (subscription id, nonce) from a confirmation token, or raise InvalidToken."""
    serializer = URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT)
    try:
        value = serializer.loads(token, max_age=max_age)
    except SignatureExpired:
        # The signature is ours, only too old: say which subscription, so the page can
        # offer that list's signup form.
        try:
            old = serializer.loads(token)
            subscription_id = old[0] if isinstance(old, list) and isinstance(old[0], int) else None
        except (BadSignature, UnicodeError, ValueError, IndexError):
            subscription_id = None
        raise ExpiredToken(
            N_("This confirmation link has expired. Please sign up again to get a new one."),
            subscription_id,
        ) from None
    except (BadTimeSignature, BadSignature, UnicodeError, ValueError):
        raise InvalidToken(CONFIRM_LINK_DAMAGED) from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or not isinstance(value[1], str)
    ):
        raise InvalidToken(CONFIRM_LINK_DAMAGED)
    return value[0], value[1]


def _base36(number: int) -> str:
    digits = []
    while True:
        number, rest = divmod(number, 36)
        digits.append(_ALPHABET[rest])
        if not number:
            return "".join(reversed(digits))


def make_unsubscribe_token(secret_key: str, subscription_id: int) -> str:
    """Sign a subscription id into a short token that never expires (about 34 characters)."""
    signer = Signer(secret_key, salt=UNSUBSCRIBE_SALT)
    return signer.sign(_base36(subscription_id)).decode("ascii")


def read_unsubscribe_token(secret_key: str, token: str) -> int:
    """Return the subscription id from an unsubscribe token, or raise InvalidToken."""
    signer = Signer(secret_key, salt=UNSUBSCRIBE_SALT)
    try:
        value = signer.unsign(token).decode("ascii")
        return int(value, 36)
    except (BadSignature, UnicodeError, ValueError):
        raise InvalidToken(UNSUBSCRIBE_LINK_DAMAGED) from None


def unsubscribe_url(base_url: str, secret_key: str, subscription_id: int) -> str:
    """Return the one-click unsubscribe URL used in the footer and List-Unsubscribe."""
    return f"{base_url}/u/{make_unsubscribe_token(secret_key, subscription_id)}"


MAILTO_PREFIX = "u+"


def unsubscribe_mailto(domain: str, secret_key: str, subscription_id: int) -> str:
    """Return the mailto: URI of List-Unsubscribe (mail to it unsubscribes, via SES receiving)."""
    token = make_unsubscribe_token(secret_key, subscription_id)
    return f"mailto:{MAILTO_PREFIX}{token}@{domain}"


def token_from_mailto_address(address: str, domain: str) -> str | None:
    """Return the unsubscribe token of an address u+TOKEN@domain, or None if it is not one."""
    local, at, host = address.strip().strip("<>").rpartition("@")
    if not at or host.lower().rstrip(".") != domain.lower().rstrip("."):
        return None
    if local[: len(MAILTO_PREFIX)].lower() != MAILTO_PREFIX:
        return None
    return local[len(MAILTO_PREFIX) :] or None
