"""Outgoing email: the one message builder and the mail backends (outbox, SES, memory)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from collections.abc import Mapping
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default
from email.utils import format_datetime
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from newsletter import clock
from newsletter import headers as headers_module
from newsletter import metrics
from newsletter.config import settings_of

if TYPE_CHECKING:
    from newsletter.lists import ListIdentity

log = logging.getLogger(__name__)


class OutgoingMessage:
    """A complete message as it goes on the wire, plus what the transport needs beside it."""

    def __init__(
        self,
        *,
        sender: str,
        recipient: str,
        raw: bytes,
        tags: Mapping[str, str] | None = None,
        chunks: list[bytes] | None = None,
    ) -> None:
        self.sender = sender  # envelope From (the list's address)
        self.recipient = recipient  # the one envelope recipient (ASCII, punycode domain)
        self.raw = raw
        self.tags = dict(tags or {})
        # `raw` in pieces, when its long ones are the same objects in every reader's
        # message (newsletter.wire): the SES transport base64-encodes those once.
        self.chunks = chunks
        self._mime: EmailMessage | None = None

    def as_bytes(self) -> bytes:
        """Return the message as it goes on the wire (CRLF, lines under 998 octets)."""
        return self.raw

    @property
    def mime(self) -> EmailMessage:
        """The message parsed back (email.policy.default): for logs, tests and the outbox."""
        if self._mime is None:
            self._mime = message_from_bytes(self.raw, policy=default)
        return self._mime


# RFC 3834 §2 asks responders to stay quiet for mail with List-* fields or Auto-Submitted
# other than "no"; Precedence: bulk (not standard) and X-Auto-Response-Suppress (Exchange)
# quiet the vacation responders that look only at those.
BULK_HEADERS = {
    "Auto-Submitted": "auto-generated",
    "Precedence": "bulk",
    "X-Auto-Response-Suppress": "OOF, AutoReply",
}


_SEVEN_BIT = SMTP.clone(cte_type="7bit")


def _body(text: str, html: str | None) -> bytes:
    # Only our own text goes through the email package: MIME parts, never header values.
    # cte_type 7bit: non-ASCII bodies go quoted-printable or base64, never raw 8-bit.
    body = EmailMessage(policy=_SEVEN_BIT)
    body.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        body.add_alternative(html, subtype="html", charset="utf-8")
    return body.as_bytes(policy=_SEVEN_BIT)


def build_message(
    *,
    from_address: str,
    from_name: str | None,
    to_address: str,
    to_name: str | None = None,
    subject: str,
    text: str,
    html: str | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
    list_unsubscribe_url: str | None = None,
    list_unsubscribe_mailto: str | None = None,
    list_id: ListIdentity | None = None,
    bulk: bool = False,
    tags: Mapping[str, str] | None = None,
) -> OutgoingMessage:
    """Build every outgoing message: all header fields are written by newsletter.headers.

    Editors' and readers' text (subject, list name, from name, reader's name) is encoded
    there so that none of it can become a header line; list headers, Message-ID and Date
    are set here, so issues, test copies, confirmations and welcome mails share them.
    """
    sender = headers_module.wire_address(from_address)
    recipient = headers_module.wire_address(to_address)
    fields = [
        headers_module.address_field("From", sender, from_name),
        headers_module.address_field("To", recipient, to_name),
    ]
    if reply_to:
        fields.append(headers_module.address_field("Reply-To", reply_to))
    fields += [
        headers_module.unstructured("Subject", subject),
        headers_module.plain_field("Date", format_datetime(clock.now())),
        headers_module.plain_field("Message-ID", make_msgid(domain=sender.rpartition("@")[2])),
    ]
    if list_id is not None:
        fields.append(headers_module.list_id_field(list_id.label, list_id.value))
        if list_id.archive_url:
            fields.append(headers_module.url_list_field("List-Archive", [list_id.archive_url]))
    if list_unsubscribe_url:
        fields += unsubscribe_fields(list_unsubscribe_url, list_unsubscribe_mailto)
    extra = {**(BULK_HEADERS if bulk else {}), **(headers or {})}
    for name, value in extra.items():
        fields.append(headers_module.unstructured(name, value))
    raw = b"".join(fields) + _body(text, html)
    return OutgoingMessage(sender=sender, recipient=recipient, raw=raw, tags=tags)


def unsubscribe_fields(url: str, mailto: str | None = None) -> list[bytes]:
    """Return List-Unsubscribe (never encoded: RFC 2369) and RFC 8058's List-Unsubscribe-Post."""
    urls = [url] + ([mailto] if mailto else [])
    return [
        headers_module.url_list_field("List-Unsubscribe", urls),
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    ]


# --- Errors, classified the way the sending engine acts on them (email-standards §6.5) ---


class MailerError(Exception):
    """Sending failed; subclasses say what to do about it."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class ThrottledError(MailerError):
    """Over the per-second rate: slow down and retry later; not a failed attempt."""


class QuotaExceededError(MailerError):
    """The 24-hour quota is used up: pause until it frees."""


class AccountPausedError(MailerError):
    """The account cannot send (paused, suspended, misconfigured): pause the send."""


class RecipientRejectedError(MailerError):
    """This message or recipient was rejected: mark it failed and go on."""


class TransientError(MailerError):
    """SES provably did not take the message (no connection, or an error answer naming
    its cause): retry with back-off."""


class UnknownOutcomeError(MailerError):
    """The request may have reached SES and its answer was lost (read timeout, connection
    closed or reset, a 5xx without an error body): SES may have taken the message, so it
    is never retried by itself."""


class Mailer(Protocol):
    """A transport: sends one message, returns the provider's message id."""

    name: str

    def send(self, message: OutgoingMessage) -> str: ...


class MemoryMailer:
    """Keeps messages in a list (tests)."""

    name = "memory"

    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> str:
        message.as_bytes()
        with self._lock:
            self.messages.append(message)
        return f"memory-{uuid.uuid4().hex}"


class OutboxMailer:
    """Writes each message as an .eml file in a folder (development and the laptop mode)."""

    name = "outbox"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def send(self, message: OutgoingMessage) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = uuid.uuid4().hex
        stamp = clock.now().strftime("%Y%m%dT%H%M%S%f")
        final = self.directory / f"{stamp}-{message_id}.eml"
        partial = final.with_suffix(".part")
        # Write then rename, so a reader of the folder never sees half a message.
        partial.write_bytes(message.as_bytes())
        partial.replace(final)
        return f"outbox-{message_id}"

    def list_messages(self) -> list[Path]:
        """Return the .eml files, newest first."""
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("*.eml"), reverse=True)


_THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_ACCOUNT_CODES = {
    "SendingPausedException",
    "AccountSuspendedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
    "AccountSendingPausedException",
    "ConfigurationSetDoesNotExist",
    "ConfigurationSetSendingPausedException",
}
_RECIPIENT_CODES = {"MessageRejected", "BadRequestException", "InvalidParameterValue"}


def classify_ses_error(code: str, message: str, status: int | None) -> MailerError:
    """Map an SES error code and message to the action the sending engine takes."""
    text = f"{code}: {message}"
    if status is not None and status >= 500 and not _names_a_cause(code):
        # A bare 5xx (a proxy or load balancer, an empty or non-JSON body): the request
        # may have been processed behind it.
        return UnknownOutcomeError(f"HTTP {status} without an error body: {message}", code)
    if "daily message quota" in message.lower() or code == "LimitExceededException":
        return QuotaExceededError(text, code)
    if code in _THROTTLE_CODES or status == 429:
        return ThrottledError(text, code)
    if code in _ACCOUNT_CODES:
        return AccountPausedError(text, code)
    if code in _RECIPIENT_CODES:
        return RecipientRejectedError(text, code)
    if status is not None and status >= 500:
        return TransientError(text, code)
    return RecipientRejectedError(text, code)


def _names_a_cause(code: str | None) -> bool:
    # botocore puts the HTTP status (or nothing) in the code when the body named none.
    return code is not None and code != "" and not code.isdigit() and code != "Unknown"


def classify_botocore_error(exc: Exception) -> MailerError:
    """Map an exception from the SES call (not an SES answer) to the engine's action.

    Only failures that happen before the request can have been written (no connection,
    a connect timeout, no credentials, a bad parameter) are known not to have reached SES.
    Anything after that (read timeout, connection closed or reset, an answer that cannot
    be read) may hide an accepted message: `unknown`, never retried by itself.
    """
    from botocore import exceptions as b

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (b.ConnectTimeoutError, b.EndpointConnectionError, b.ProxyConnectionError)):
        return TransientError(text, "connect")
    if isinstance(exc, (b.NoCredentialsError, b.PartialCredentialsError, b.NoRegionError)):
        return AccountPausedError(text, "credentials")
    if isinstance(exc, b.ParamValidationError):
        return RecipientRejectedError(text, "parameters")
    return UnknownOutcomeError(text, "network")


# One botocore session for the process: its clients share the loaded service models, and
# its credentials (refreshed by botocore when they are temporary) sign the direct calls.
# botocore's own session, not boto3's: importing boto3 also imports s3transfer, about
# 0.1 s of every command's start-up for nothing we use.
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def _aws_session() -> Any:
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            import botocore.session

            _SESSION = botocore.session.get_session()
        return _SESSION


SES_TRANSPORTS = ("direct", "boto3")


class SesMailer:
    """Sends through Amazon SES API v2 (SendEmail with raw MIME).

    `transport="direct"` (the default) makes SendEmail a signed HTTP request of its own on
    the client's connection pool (newsletter.ses_transport: a third of boto3's CPU per
    call); "boto3", a client passed in, or a configuration only boto3 can honour uses
    `client.send_email`. Both raise the same errors for the same answers.
    """

    name = "ses"

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        configuration_set: str | None = None,
        max_pool_connections: int = 10,
        timeout: float = 15.0,
        client: Any = None,
        transport: str = "direct",
    ) -> None:
        if transport not in SES_TRANSPORTS:
            raise ValueError(f"unknown SES transport {transport!r}")
        self.configuration_set = configuration_set
        self.direct: Any = None  # a SendEmailTransport, when SendEmail goes direct
        # How the client was built (None: it was given): a worker reuses it when it fits
        # (newsletter.sending.worker_mailer), instead of building a second one.
        self.client_options: dict[str, Any] | None = None
        if client is None:
            self.client_options = {
                "region": region,
                "endpoint_url": endpoint_url,
                "max_pool_connections": max_pool_connections,
                "timeout": timeout,
                "transport": transport,
            }
            from botocore.config import Config

            session = _aws_session()
            client = session.create_client(
                "sesv2",
                region_name=region or "us-east-1",
                endpoint_url=endpoint_url,
                config=Config(
                    # Our sending engine decides every retry, so botocore makes none: a
                    # retry after a read timeout could send a second copy.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    max_pool_connections=max_pool_connections,
                    connect_timeout=timeout,
                    read_timeout=timeout,
                ),
            )
            if transport == "direct":
                from newsletter.ses_transport import SendEmailTransport

                self.direct = SendEmailTransport.for_client(client, session.get_credentials())
        self.client = client

    def send(self, message: OutgoingMessage) -> str:
        if self.direct is not None:
            return self.direct.send(
                sender=message.sender,
                recipient=message.recipient,
                raw=message.as_bytes(),
                configuration_set=self.configuration_set,
                tags=message.tags,
                chunks=message.chunks,
            )
        from botocore.exceptions import BotoCoreError
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.as_bytes()}},
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        if message.tags:
            kwargs["EmailTags"] = [{"Name": k, "Value": v} for k, v in message.tags.items()]
        try:
            with metrics.SES_CALL_SECONDS.time():
                response = self.client.send_email(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise classify_ses_error(
                error.get("Code", "Unknown"), error.get("Message", ""), status
            ) from exc
        except BotoCoreError as exc:
            raise classify_botocore_error(exc) from exc
        return response["MessageId"]


def make_mailer(config: Mapping[str, Any]) -> Mailer:
    """Create the mail backend the configuration names."""
    backend = config["MAIL_BACKEND"]
    if backend == "ses":
        return SesMailer(
            region=config.get("SES_REGION"),
            endpoint_url=config.get("SES_ENDPOINT_URL"),
            configuration_set=config.get("SES_CONFIGURATION_SET"),
            # Room for a worker's threads: `newsletter send` and `worker` reuse this client
            # (building a second one costs ~0.15 s of start-up).
            max_pool_connections=max(settings_of(config).send_concurrency, 10),
            timeout=float(settings_of(config).ses_timeout),
            transport=settings_of(config).ses_transport,
        )
    if backend == "memory":
        return MemoryMailer()
    return OutboxMailer(config["OUTBOX_DIR"])


# --- Mail that waits for the commit that records it ---

_DEFERRED = "newsletter.deferred_mail"


def defer(session: Any, message: OutgoingMessage) -> None:
    """Queue a message to go out only after the session's transaction commits."""
    session.info.setdefault(_DEFERRED, []).append(message)


def discard_deferred(session: Any) -> None:
    """Drop queued messages (the transaction rolled back)."""
    session.info.pop(_DEFERRED, None)


def send_deferred(session: Any, mailer: Mailer) -> list[str]:
    """Send the messages queued on a session whose transaction has committed."""
    messages: Iterable[OutgoingMessage] = session.info.pop(_DEFERRED, [])
    sent = []
    for message in messages:
        try:
            sent.append(mailer.send(message))
        except MailerError:
            # The row is committed; the reader can ask again (within the cap).
            log.exception("could not send %s to %s", message.mime["Subject"], message.recipient)
    return sent
