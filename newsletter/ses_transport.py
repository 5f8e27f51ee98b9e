"""SendEmail as one signed HTTP request on the boto3 client's own connection pool.

A `sesv2.send_email` call costs botocore about 1.5 ms of CPU (parameter validation, the
JSON encoder scanning the 90 KB base64 body, event hooks, endpoint rules, the signer's
request copies, response parsing), and under the GIL that caps a sending process. This
module makes the same request by hand: the same URL, the same body bytes and the same
Signature Version 4 signature (tests compare all three with botocore's), sent through the
client's own HTTP session, so proxies, TLS verification and its CA bundle, client
certificates, timeouts and the pool size stay what the client was configured with. Every
other SES call, and any client this cannot honour, goes through boto3.

Errors are mapped by the same rules as boto3's (newsletter.mail): the answer's error code
and message are read the way botocore's rest-json parser reads them, and the HTTP
session raises botocore's own exceptions (connection refused or a connect timeout before
the request was written; a read timeout, reset or closed connection after it may have
been).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit

from newsletter import metrics

# The operation's HTTP binding (botocore's sesv2 model: POST /v2/email/outbound-emails).
SEND_EMAIL_PATH = "/v2/email/outbound-emails"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _utcnow() -> datetime:
    # One place to read the clock, so a test can sign at a frozen time.
    return datetime.now(UTC)


class Base64Pieces:
    """base64 of a message given in pieces, the long pieces encoded once for all messages.

    An issue's messages share their long pieces (the same bytes objects: newsletter.wire);
    only the reader's short values between them differ. base64 maps every 3 bytes to 4
    characters, so a piece's encoding depends only on where it starts modulo 3: each long
    piece is encoded once per alignment, and a message costs the short pieces only (0.14
    ms of CPU under the GIL for the 65 KB example issue, otherwise).
    """

    LONG = 1024  # pieces at least this long are kept
    KEEP = 256  # entries at most (three per piece): a few issues' pieces

    def __init__(self) -> None:
        # (id(piece), bytes borrowed from the carry) -> (piece, encoded middle, tail)
        self._encoded: dict[tuple[int, int], tuple[bytes, bytes, bytes]] = {}

    def encode(self, pieces: list[bytes]) -> bytes:
        """Return base64.b64encode(b"".join(pieces))."""
        out: list[bytes] = []
        carry = b""  # fewer than 3 bytes not encoded yet
        for piece in pieces:
            if len(piece) < self.LONG:
                data = carry + piece
                whole = len(data) - len(data) % 3
                out.append(base64.b64encode(data[:whole]))
                carry = data[whole:]
                continue
            # Complete the carry to 3 bytes with the piece's first bytes; the rest of the
            # piece starts on a 3-byte boundary.
            borrow = (3 - len(carry)) % 3
            out.append(base64.b64encode(carry + piece[:borrow]))
            key = (id(piece), borrow)
            entry = self._encoded.get(key)
            if entry is None or entry[0] is not piece:
                rest = piece[borrow:]
                whole = len(rest) - len(rest) % 3
                entry = (piece, base64.b64encode(rest[:whole]), rest[whole:])
                if len(self._encoded) >= self.KEEP:
                    self._encoded.clear()
                self._encoded[key] = entry  # one assignment: safe between threads
            out.append(entry[1])
            carry = entry[2]
        out.append(base64.b64encode(carry))
        return b"".join(out)


def send_email_body(
    sender: str,
    recipient: str,
    raw: bytes,
    configuration_set: str | None,
    tags: Mapping[str, str],
    *,
    encoded: bytes | None = None,
) -> bytes:
    """Return SendEmail's JSON body, byte for byte what botocore serialises for the call
    (`encoded`: base64 of `raw`, when the caller has it already).

    json.dumps spends half a millisecond checking the 90 KB of base64 for characters to
    escape; base64 has none, so it is spliced in as it is.
    """
    head = json.dumps({"FromEmailAddress": sender, "Destination": {"ToAddresses": [recipient]}})
    tail: dict[str, Any] = {}
    if configuration_set:
        tail["ConfigurationSetName"] = configuration_set
    if tags:
        tail["EmailTags"] = [{"Name": k, "Value": v} for k, v in tags.items()]
    rest = json.dumps(tail)[1:] if tail else "}"
    return b"".join(
        (
            head[:-1].encode(),
            b', "Content": {"Raw": {"Data": "',
            base64.b64encode(raw) if encoded is None else encoded,
            b'"}}',
            b", " + rest.encode() if tail else b"}",
        )
    )


def error_of(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str] | None:
    """Return (code, message) of an SES error answer, read as botocore's rest-json parser
    reads it (so newsletter.mail.classify_ses_error sees what it sees with boto3); None
    for an answer botocore cannot read (JSON that is not an object)."""
    if status >= 500 and (not body or body.strip().startswith(b"<html>")):
        # A generic answer (a proxy's page, or nothing): no code but the status.
        return str(status), http.client.responses.get(status, "")
    parsed: Any
    if not body:
        parsed = {}
    else:
        text = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"message": text}
    if not isinstance(parsed, dict):
        return None
    message = parsed.get("message", parsed.get("Message", ""))
    code: Any = parsed.get("__type", str(status))
    header = _header(headers, "x-amzn-errortype")
    if header is not None:
        code = header
    elif "code" in parsed or "Code" in parsed:
        code = parsed.get("code", parsed.get("Code", ""))
    if isinstance(code, str):
        code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    return str(code), str(message)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # A plain dict (tests); urllib3's and botocore's header maps ignore case.
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def _host(url: str) -> str:
    # The Host header http.client sends, as botocore signs it: lower case, no userinfo,
    # the port only when it is not the scheme's default.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_path(path: str) -> str:
    # As botocore's signer: dot and empty segments removed, then percent-encoded.
    from botocore.utils import normalize_url_path

    return quote(normalize_url_path(path), safe="/~")


class SendEmailTransport:
    """SendEmail by hand for one boto3 sesv2 client (see the module's docstring)."""

    def __init__(self, client: Any, credentials: Any, http_session: Any) -> None:
        endpoint = client.meta.endpoint_url
        parts = urlsplit(endpoint)
        path = parts.path.rstrip("/") + SEND_EMAIL_PATH
        self.url = f"{parts.scheme}://{parts.netloc}{path}"
        self._http = http_session
        self._credentials = credentials
        self._region = client.meta.region_name
        self._service = client.meta.service_model.signing_name
        self._host = _host(endpoint)
        self._path = _canonical_path(path)
        self._user_agent = f"{client.meta.config.user_agent} md/newsletter#sendemail-direct"
        # (secret key, day) -> the day's signing key: four HMACs saved per call.
        self._key: tuple[str, str, bytes] | None = None
        self._base64 = Base64Pieces()

    @classmethod
    def for_client(cls, client: Any, credentials: Any) -> SendEmailTransport | None:
        """Return a transport for a boto3 sesv2 client, or None when only boto3 can honour
        the client's configuration (no credentials yet, another signature version, an
        endpoint with a query string, no HTTP session to reuse)."""
        endpoint = getattr(client, "_endpoint", None)
        http_session = getattr(endpoint, "http_session", None)
        if credentials is None or not callable(getattr(http_session, "send", None)):
            return None
        meta = client.meta
        if meta.service_model.service_name != "sesv2":
            return None
        if meta.config.signature_version not in (None, "v4"):
            return None
        parts = urlsplit(meta.endpoint_url or "")
        if parts.scheme not in _DEFAULT_PORTS or parts.query or parts.fragment:
            return None
        return cls(client, credentials, http_session)

    def headers(self, body: bytes, now: datetime | None = None) -> dict[str, str]:
        """Return the request's headers, signed with Signature Version 4."""
        credentials = self._credentials.get_frozen_credentials()
        stamp = (now or _utcnow()).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {
            "content-type": "application/json",
            "host": self._host,
            "x-amz-date": stamp,
        }
        if credentials.token:
            signed["x-amz-security-token"] = " ".join(credentials.token.split())
        names = ";".join(signed)  # already in sorted order
        canonical = "\n".join(
            (
                "POST",
                self._path,
                "",
                "".join(f"{name}:{value}\n" for name, value in signed.items()),
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "X-Amz-Date": stamp,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                f"SignedHeaders={names}, Signature={signature}"
            ),
            "Content-Length": str(len(body)),
        }
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        return headers

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = f"AWS4{secret}".encode()
        for part in (day, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = (secret, day, key)  # one tuple assignment: safe between threads
        return key

    def send(
        self,
        *,
        sender: str,
        recipient: str,
        raw: bytes,
        configuration_set: str | None,
        tags: Mapping[str, str],
        chunks: list[bytes] | None = None,
    ) -> str:
        """Send one raw message (`chunks`: the same bytes in pieces, see Base64Pieces);
        return SES's MessageId or raise the classified MailerError."""
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.exceptions import BotoCoreError

        from newsletter.mail import UnknownOutcomeError
        from newsletter.mail import classify_botocore_error
        from newsletter.mail import classify_ses_error

        try:
            with metrics.SES_CALL_SECONDS.time():
                encoded = None if chunks is None else self._base64.encode(chunks)
                body = send_email_body(
                    sender, recipient, raw, configuration_set, tags, encoded=encoded
                )
                request = AWSPreparedRequest(
                    "POST", self.url, self.headers(body), body, stream_output=False
                )
                response = self._http.send(request)
                status, content = response.status_code, response.content
        except BotoCoreError as exc:
            raise classify_botocore_error(exc) from exc
        if status >= 301:
            error = error_of(status, response.headers, content)
            if error is None:
                raise UnknownOutcomeError(f"an unreadable answer (HTTP {status})", "network")
            raise classify_ses_error(*error, status)
        try:
            message_id = json.loads(content)["MessageId"]
        except (ValueError, TypeError, KeyError) as exc:
            # SES answered 2xx, so it may well have taken the message.
            raise UnknownOutcomeError(
                f"an answer without a MessageId (HTTP {status})", "network"
            ) from exc
        if not isinstance(message_id, str) or not message_id:
            raise UnknownOutcomeError(f"an answer without a MessageId (HTTP {status})", "network")
        return message_id
