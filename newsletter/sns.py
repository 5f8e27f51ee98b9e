"""Amazon SNS messages: signature verification (versions 1 and 2) and subscription confirmation.

Nothing here trusts the request: the signed `Type` decides what a message is, the
certificate and SubscribeURL are fetched only from hosts of Amazon SNS, and the topic must
be one the operator listed in NEWSLETTER_SNS_TOPIC_ARNS.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter import clock
from newsletter.config import settings_of
from newsletter.errors import NewsletterError

log = logging.getLogger(__name__)

# The official validator's pattern (aws-php-sns-message-validator): any amazonaws.com host
# is not enough, because S3 buckets live under it too.
SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

_SIGNED_KEYS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_KEYS[UNSUBSCRIBE_CONFIRMATION] = _SIGNED_KEYS[SUBSCRIPTION_CONFIRMATION]
_OPTIONAL_KEYS = {"Subject"}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# Certificates and confirmation pages are small; never read more than this from AWS.
_MAX_FETCH_BYTES = 64 * 1024


class SnsError(NewsletterError):
    """The post is not an SNS message we accept; nothing was changed."""

    status_code = 400


class MalformedMessage(SnsError):
    """The body is not a well-formed SNS message."""


class ForgedMessage(SnsError):
    """The signature, certificate URL or SubscribeURL does not check out."""

    status_code = 403


class UnknownTopic(SnsError):
    """The topic is not in NEWSLETTER_SNS_TOPIC_ARNS."""

    status_code = 403


class StaleMessage(SnsError):
    """The signed Timestamp is older than NEWSLETTER_SNS_MAX_AGE."""

    status_code = 403


def check_certificate_url(url: str) -> None:
    """Raise ForgedMessage unless the URL is https on an SNS host, without port, ending in .pem."""
    _check_sns_url(url, "SigningCertURL")
    if not urlsplit(url).path.endswith(".pem"):
        raise ForgedMessage("SigningCertURL does not name a .pem certificate")


def check_subscribe_url(url: str, topic_arn: str) -> None:
    """Raise ForgedMessage unless the URL is https on an SNS host and confirms this topic."""
    _check_sns_url(url, "SubscribeURL")
    topics = parse_qs(urlsplit(url).query).get("TopicArn", [])
    if topics != [topic_arn]:
        raise ForgedMessage("SubscribeURL does not confirm the message's own TopicArn")


def _check_sns_url(url: str, name: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ForgedMessage(f"{name} is not a URL") from None
    if parts.scheme != "https":
        raise ForgedMessage(f"{name} is not https")
    if port is not None or parts.username is not None or parts.password is not None:
        raise ForgedMessage(f"{name} names a port or credentials")
    if not SNS_HOST.match(parts.hostname or ""):
        raise ForgedMessage(f"{name} is not on an Amazon SNS host")


def string_to_sign(message: dict[str, Any]) -> bytes:
    """Return the bytes SNS signed: `key\\nvalue\\n` for each signed key present, in order."""
    keys = _SIGNED_KEYS.get(message.get("Type", ""))
    if keys is None:
        raise MalformedMessage("unknown SNS message Type")
    parts = []
    for key in keys:
        # A null Subject counts as absent, as in AWS's own validators (isset() in PHP).
        if message.get(key) is not None:
            parts.append(f"{key}\n{message[key]}\n")
    return "".join(parts).encode("utf-8")


def fetch_https(url: str) -> bytes:
    """Fetch a URL over verified HTTPS (only ever called with a checked SNS URL)."""
    context = ssl.create_default_context()
    request = urllib.request.Request(url, headers={"User-Agent": "newsletter-sns-client"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.read(_MAX_FETCH_BYTES)


class CertificateStore:
    """SNS signing certificates, fetched once per URL and kept (they change rarely)."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_https) -> None:
        self.fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        """Return the RSA public key of the certificate at a checked URL."""
        known = self._keys.get(url)
        if known is not None:
            return known
        try:
            pem = self.fetch(url)
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise ForgedMessage("SigningCertURL does not hold a PEM certificate") from None
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:  # no such certificate at AWS: not a message of theirs
                raise ForgedMessage(f"SigningCertURL answered {exc.code}") from None
            raise CertificateUnavailable(f"cannot fetch the signing certificate: {exc}") from exc
        except OSError as exc:
            # Unreachable AWS: SNS will retry, so this is not the sender's fault.
            raise CertificateUnavailable(f"cannot fetch the signing certificate: {exc}") from exc
        now = clock.now()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise ForgedMessage("the signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ForgedMessage("the signing certificate has no RSA key")
        with self._lock:
            self._keys[url] = key
        return key


class CertificateUnavailable(Exception):
    """The certificate could not be fetched right now (a 5xx, so SNS retries)."""


@dataclass
class SnsGateway:
    """Verifies SNS posts and confirms subscriptions; the app keeps one in app.extensions.

    `certificates.fetch` and `open_url` are the only ways out to the network; tests and
    benchmarks replace them (see bench/webhook_wsgi.py), production uses verified HTTPS.
    """

    topic_arns: frozenset[str]
    certificates: CertificateStore = field(default_factory=CertificateStore)
    max_age: timedelta | None = None
    open_url: Callable[[str], bytes] = fetch_https

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SnsGateway:
        """Build the gateway from NEWSLETTER_SNS_TOPIC_ARNS and NEWSLETTER_SNS_MAX_AGE."""
        arns: Iterable[str] = config.get("SNS_TOPIC_ARNS") or ()
        if isinstance(arns, str):
            arns = [a.strip() for a in arns.split(",") if a.strip()]
        max_age = settings_of(config).sns_max_age
        return cls(
            topic_arns=frozenset(arns),
            max_age=timedelta(seconds=max_age) if max_age > 0 else None,
        )

    def verify(self, body: bytes) -> dict[str, Any]:
        """Parse and verify a posted SNS message; return it, or raise an SnsError."""
        message = parse_message(body)
        if message["TopicArn"] not in self.topic_arns:
            raise UnknownTopic(f"topic {message['TopicArn']!r} is not accepted")
        hash_algorithm = _HASHES.get(message["SignatureVersion"])
        if hash_algorithm is None:
            raise MalformedMessage(
                f"SignatureVersion {message['SignatureVersion']!r} is not supported (1 or 2)"
            )
        check_certificate_url(message["SigningCertURL"])
        try:
            signature = base64.b64decode(message["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise ForgedMessage("Signature is not base64") from None
        key = self.certificates.public_key(message["SigningCertURL"])
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), hash_algorithm())
        except InvalidSignature:
            raise ForgedMessage("the signature does not match the message") from None
        if self.max_age is not None:
            sent = _parse_timestamp(message["Timestamp"])
            if clock.now() - sent > self.max_age:
                raise StaleMessage(f"message is older than {self.max_age}")
        return message

    def confirm_subscription(self, message: dict[str, Any]) -> None:
        """Visit the SubscribeURL of a verified SubscriptionConfirmation, after the host checks."""
        url = message["SubscribeURL"]
        check_subscribe_url(url, message["TopicArn"])
        try:
            self.open_url(url)
        except OSError as exc:
            raise CertificateUnavailable(f"cannot confirm the subscription: {exc}") from exc
        log.info("confirmed SNS subscription to %s", message["TopicArn"])


def parse_message(body: bytes) -> dict[str, Any]:
    """Decode an SNS body and check its keys are present and are strings."""
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedMessage("the body is not JSON") from None
    if not isinstance(message, dict):
        raise MalformedMessage("the body is not a JSON object")
    kind = message.get("Type")
    if kind not in _SIGNED_KEYS:
        raise MalformedMessage("unknown or missing SNS message Type")
    required = [k for k in _SIGNED_KEYS[kind] if k not in _OPTIONAL_KEYS]
    required += ["SignatureVersion", "Signature", "SigningCertURL"]
    for key in required:
        if not isinstance(message.get(key), str):
            raise MalformedMessage(f"{key} is missing or not a string")
    if message.get("Subject") is not None and not isinstance(message["Subject"], str):
        raise MalformedMessage("Subject is not a string")
    return message


def _parse_timestamp(value: str) -> datetime:
    try:
        return clock.parse_timestamp(value)
    except ValueError:
        raise MalformedMessage("Timestamp is not an ISO 8601 time with its time zone") from None
