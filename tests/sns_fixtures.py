"""Signed SNS messages for tests and the webhook benchmark: a self-signed test certificate
stands in for Amazon's, and SES events are built in both styles."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from newsletter.sns import string_to_sign

TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:newsletter-ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000test.pem"

# Every bounce type and subtype in email-standards.md §8.3.
BOUNCE_TYPES = [
    ("Undetermined", "Undetermined"),
    ("Permanent", "General"),
    ("Permanent", "NoEmail"),
    ("Permanent", "Suppressed"),
    ("Permanent", "OnAccountSuppressionList"),
    ("Transient", "General"),
    ("Transient", "MailboxFull"),
    ("Transient", "MessageTooLarge"),
    ("Transient", "ContentRejected"),
    ("Transient", "AttachmentRejected"),
]


@dataclass
class SnsSigner:
    """An RSA key with a self-signed certificate, signing SNS messages like SNS does."""

    key: rsa.RSAPrivateKey
    pem: bytes

    @classmethod
    def create(cls) -> SnsSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com (test)")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            # Wide validity: tests freeze the clock in 2026.
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(now + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        return cls(key=key, pem=certificate.public_bytes(serialization.Encoding.PEM))

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        """Add SignatureVersion, SigningCertURL and Signature to a message."""
        message.setdefault("SigningCertURL", CERT_URL)
        message["SignatureVersion"] = version
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message

    def fetch(self, url: str) -> bytes:
        """Stand in for the HTTPS certificate fetch (only our own URL exists)."""
        if url != CERT_URL:
            raise OSError(f"no certificate at {url}")
        return self.pem


def notification(
    signer: SnsSigner,
    event: dict[str, Any],
    *,
    version: str = "2",
    topic_arn: str = TOPIC_ARN,
    message_id: str | None = None,
    timestamp: str = "2026-03-02T09:00:00.000Z",
) -> dict[str, Any]:
    """Return a signed SNS Notification carrying an SES event."""
    message = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": json.dumps(event),
        "Timestamp": timestamp,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    return signer.sign(message, version)


def subscription_confirmation(
    signer: SnsSigner,
    *,
    kind: str = "SubscriptionConfirmation",
    subscribe_url: str | None = None,
    version: str = "2",
) -> dict[str, Any]:
    """Return a signed SubscriptionConfirmation (or UnsubscribeConfirmation)."""
    url = subscribe_url or (
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC_ARN}&Token=2336412f37fb"
    )
    message = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb",
        "TopicArn": TOPIC_ARN,
        "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.",
        "SubscribeURL": url,
        "Timestamp": "2026-03-02T09:00:00.000Z",
    }
    return signer.sign(message, version)


def ses_event(
    kind: str,
    recipient: str,
    *,
    style: str = "event",
    message_id: str | None = None,
    tags: dict[str, str] | None = None,
    bounce: tuple[str, str] = ("Permanent", "General"),
    timestamp: str = "2026-03-02T09:00:00.000Z",
) -> dict[str, Any]:
    """Return an SES event: style "event" (eventType, tags) or "identity" (notificationType)."""
    mail: dict[str, Any] = {
        "timestamp": timestamp,
        "messageId": message_id or f"0100018e{uuid.uuid4().hex}-000000",
        "source": "news@example.com",
        "destination": [recipient],
    }
    event: dict[str, Any] = {"mail": mail}
    if style == "event":
        event["eventType"] = kind
        mail["tags"] = {"ses:configuration-set": ["newsletter"]} | {
            k: [v] for k, v in (tags or {}).items()
        }
    else:
        event["notificationType"] = kind
    if kind == "Bounce":
        event["bounce"] = {
            "bounceType": bounce[0],
            "bounceSubType": bounce[1],
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": timestamp,
            "feedbackId": "0100018e-feedback",
        }
    elif kind == "Complaint":
        event["complaint"] = {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": timestamp,
            "feedbackId": "0100018e-feedback",
            "complaintFeedbackType": "abuse",
        }
    elif kind == "Delivery":
        event["delivery"] = {
            "timestamp": timestamp,
            "recipients": [recipient],
            "processingTimeMillis": 546,
            "smtpResponse": "250 ok",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        }
    elif kind == "Send":
        event["send"] = {}
    elif kind == "Reject":
        event["reject"] = {"reason": "Bad content"}
    elif kind == "DeliveryDelay":
        event["deliveryDelay"] = {
            "delayType": "MailboxFull",
            "delayedRecipients": [{"emailAddress": recipient, "status": "4.2.2"}],
            "timestamp": timestamp,
        }
    return event


def received_mail(
    recipients: list[str],
    *,
    sender: str = "reader@example.org",
    subject: str = "unsubscribe",
    virus: str = "PASS",
    topic_arn: str = TOPIC_ARN,
) -> dict[str, Any]:
    """Return what an SES receipt rule's SNS action publishes for an incoming mail."""
    return {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-03-02T09:00:00.000Z",
            "source": sender,
            "messageId": f"inbound-{uuid.uuid4().hex}",
            "destination": recipients,
            "headersTruncated": False,
            "commonHeaders": {"from": [sender], "to": recipients, "subject": subject},
        },
        "receipt": {
            "timestamp": "2026-03-02T09:00:00.000Z",
            "processingTimeMillis": 222,
            "recipients": recipients,
            "spamVerdict": {"status": "PASS"},
            "virusVerdict": {"status": virus},
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "dmarcVerdict": {"status": "PASS"},
            "action": {"type": "SNS", "topicArn": topic_arn, "encoding": "UTF8"},
        },
        "content": f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n\r\n",
    }
