"""A small SES API v2-compatible HTTP server for tests, which misbehaves on command.

It answers `POST /v2/email/outbound-emails` (SendEmail) and `GET /v2/email/account`
(GetAccount) the way SES does, records every message it accepted, and can throttle
(429 TooManyRequestsException), reject (400 MessageRejected), fail (500 with an error
body, or a bare 500), hang, be slow, or enforce a maximum rate of its own, like SES does.
It can also take a message and then leave the client in the dark, the ambiguous cases:
`drop` (accept, then close the connection without an answer), `reset` (accept, then reset
the connection) and `late` (accept, then answer after `seconds`, past the client's read
timeout).
"""

from __future__ import annotations

import base64
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

ERRORS = {
    "throttle": (429, "TooManyRequestsException", "Maximum sending rate exceeded."),
    "reject": (400, "MessageRejected", "Email address is not verified."),
    "error500": (500, "InternalFailure", "We encountered an internal error."),
    "quota": (400, "LimitExceededException", "Daily message quota exceeded."),
    "paused": (400, "SendingPausedException", "Sending is paused for this account."),
}
# Misbehaviours after which the message *was* accepted, but the client never learns it.
AMBIGUOUS = ("drop", "reset", "late")


@dataclass
class Accepted:
    message_id: str
    recipients: list[str]
    raw: bytes
    tags: dict[str, str]
    configuration_set: str | None
    at: float


@dataclass
class Rule:
    """Misbehave `count` times (for one recipient, if given)."""

    kind: str  # a key of ERRORS, or "hang" / "slow" / "bare500", or one of AMBIGUOUS
    count: int = 1
    recipient: str | None = None
    seconds: float = 0.0


@dataclass
class SesFake:
    """The server's state; start() serves it on 127.0.0.1."""

    latency: float = 0.0
    max_rate: float | None = None  # like SES: over this per second, answer 429
    quota: dict[str, float] = field(
        default_factory=lambda: {"Max24HourSend": 50000.0, "MaxSendRate": 14.0}
    )
    sending_enabled: bool = True
    account_broken: bool = False  # GetAccount answers 500
    accepted: list[Accepted] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    requests: int = 0
    account_reads: int = 0  # GetAccount calls
    throttled: int = 0
    # Misbehave at random: kind -> probability per SendEmail (bench/send_faults.py).
    chaos: dict[str, float] = field(default_factory=dict)
    chaos_seconds: float = 0.0  # for "late" and "hang"
    seed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._random = random.Random(self.seed)

    # -- control --

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def misbehave(self, kind: str, count: int = 1, **kwargs: Any) -> None:
        with self._lock:
            self.rules.append(Rule(kind, count, **kwargs))

    def recipients(self) -> list[str]:
        with self._lock:
            return [r for message in self.accepted for r in message.recipients]

    # -- behaviour --

    def _rule_for(self, recipient: str) -> Rule | None:
        with self._lock:
            # Rules for this recipient first, then the ones for anybody.
            for wanted in (recipient, None):
                for rule in self.rules:
                    if rule.count > 0 and rule.recipient == wanted:
                        rule.count -= 1
                        return rule
            draw = self._random.random()
            for kind, probability in self.chaos.items():
                if draw < probability:
                    return Rule(kind, seconds=self.chaos_seconds)
                draw -= probability
        return None

    def _over_rate(self, now: float) -> bool:
        if self.max_rate is None:
            return False
        with self._lock:
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.max_rate:
                self.throttled += 1
                return True
            self._recent.append(now)
            return False

    def send_email(
        self, body: dict[str, Any], arrived: float
    ) -> tuple[int, dict[str, str], dict[str, Any]] | str | None:
        """Return the answer (status, headers, body), None to hang up unseen, or an
        ambiguous kind ("drop", "reset", "late") after accepting the message."""
        with self._lock:
            self.requests += 1
        recipients = body.get("Destination", {}).get("ToAddresses", [])
        rule = self._rule_for(recipients[0] if recipients else "")
        if rule is not None and rule.kind == "hang":
            # The request is never processed: SES did not take it, the client times out.
            time.sleep(rule.seconds)
            return None
        delay = self.latency + (rule.seconds if rule is not None and rule.kind == "slow" else 0)
        if delay:
            time.sleep(delay)
        if rule is not None and rule.kind in ERRORS:
            return _error(*ERRORS[rule.kind])
        if rule is not None and rule.kind == "bare500":
            return 500, {}, {}
        if not self.sending_enabled:
            return _error(*ERRORS["paused"])
        if self._over_rate(arrived):
            return _error(*ERRORS["throttle"])
        raw = base64.b64decode(body["Content"]["Raw"]["Data"])
        message_id = f"fake-{uuid.uuid4().hex}"
        tags = {tag["Name"]: tag["Value"] for tag in body.get("EmailTags", [])}
        with self._lock:
            self.accepted.append(
                Accepted(
                    message_id=message_id,
                    recipients=list(recipients),
                    raw=raw,
                    tags=tags,
                    configuration_set=body.get("ConfigurationSetName"),
                    at=arrived,
                )
            )
        if rule is not None and rule.kind in AMBIGUOUS:
            return rule.kind if rule.kind != "late" else f"late:{rule.seconds}:{message_id}"
        return 200, {}, {"MessageId": message_id}

    def account(self) -> dict[str, Any]:
        with self._lock:
            sent = float(len(self.accepted))
        return {
            "SendQuota": {**self.quota, "SentLast24Hours": sent},
            "SendingEnabled": self.sending_enabled,
            "ProductionAccessEnabled": True,
            "EnforcementStatus": "HEALTHY",
            "DedicatedIpAutoWarmupEnabled": False,
        }


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return status, {"x-amzn-ErrorType": code}, {"message": message}


class _Handler(BaseHTTPRequestHandler):
    state: SesFake
    protocol_version = "HTTP/1.1"
    # Nagle plus delayed ACK would add ~40 ms to each answer (toolchain notes §8).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode() if body else b""
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"x-amzn-RequestId: {uuid.uuid4()}",
        ]
        # Status line, headers and body in one write.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)

    def do_POST(self) -> None:
        arrived = time.time()  # SES counts a message against the rate when it arrives
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v2/email/outbound-emails":
            self._answer(404, {"x-amzn-ErrorType": "NotFoundException"}, {"message": "no"})
            return
        answer = self.state.send_email(body, arrived)
        if answer is None or answer == "drop":
            self._hang_up()
            return
        if answer == "reset":
            # SO_LINGER 0: close() sends a RST instead of a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if isinstance(answer, str):  # "late:<seconds>:<message id>"
            _, seconds, message_id = answer.split(":", 2)
            time.sleep(float(seconds))
            try:
                self._answer(200, {}, {"MessageId": message_id})
            except OSError:
                pass  # the client gave up and closed the connection
            self.close_connection = True
            return
        self._answer(*answer)

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v2/email/account":
            with self.state._lock:
                self.state.account_reads += 1
            if self.state.account_broken:
                self._answer(*_error(*ERRORS["error500"]))
            else:
                self._answer(200, {}, self.state.account())
        else:
            self._answer(404, {"x-amzn-ErrorType": "NotFoundException"}, {"message": "no"})
