"""The direct SendEmail transport: the same request as botocore's, the same error rules."""

from __future__ import annotations

import socket
from datetime import UTC
from datetime import datetime

import boto3
import botocore.auth
import pytest
from botocore import exceptions as boto
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.parsers import create_parser
from urllib3 import HTTPHeaderDict

from newsletter import ses_transport
from newsletter.config import ConfigError
from newsletter.config import load_config
from newsletter.mail import AccountPausedError
from newsletter.mail import OutgoingMessage
from newsletter.mail import QuotaExceededError
from newsletter.mail import RecipientRejectedError
from newsletter.mail import SesMailer
from newsletter.mail import ThrottledError
from newsletter.mail import TransientError
from newsletter.mail import UnknownOutcomeError
from newsletter.mail import build_message
from newsletter.ses_transport import SendEmailTransport
from newsletter.ses_transport import error_of

FROZEN = datetime(2026, 12, 5, 7, 8, 9, tzinfo=UTC)
RAW = b"Subject: hi\r\nTo: b@example.com\r\n\r\n" + bytes(range(256)) * 40


def _message(tags=None) -> OutgoingMessage:
    return OutgoingMessage(
        sender="news@example.com",
        recipient="b@example.com",
        raw=RAW,
        tags={"issue": "7", "delivery": "42", "list": "weekly"} if tags is None else tags,
    )


class _Body:
    """A raw HTTP body for botocore's AWSResponse."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


def _botocore_request(client, message: OutgoingMessage, configuration_set: str | None):
    """The request botocore would send for this message: URL, headers, body."""
    captured = {}

    def before_send(request, **_):
        captured["request"] = request
        # Answered here: botocore's request never leaves the process.
        return AWSResponse(request.url, 200, {}, _Body(b'{"MessageId": "m"}'))

    client.meta.events.register("before-send.sesv2.SendEmail", before_send)
    kwargs = {
        "FromEmailAddress": message.sender,
        "Destination": {"ToAddresses": [message.recipient]},
        "Content": {"Raw": {"Data": message.raw}},
    }
    if configuration_set:
        kwargs["ConfigurationSetName"] = configuration_set
    if message.tags:
        kwargs["EmailTags"] = [{"Name": k, "Value": v} for k, v in message.tags.items()]
    try:
        assert client.send_email(**kwargs)["MessageId"] == "m"
    finally:
        client.meta.events.unregister("before-send.sesv2.SendEmail", before_send)
    request = captured["request"]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return request.url, headers, request.body


@pytest.mark.parametrize(
    ("region", "endpoint_url", "token"),
    [
        ("eu-west-1", None, None),
        ("us-east-1", None, "FwoGZXIvYXdzE//session+token/with spaces=="),
        ("us-east-1", "http://127.0.0.1:8999", None),
        ("ap-southeast-2", "https://ses-proxy.internal.example:8443/prefix/", "token-2"),
    ],
)
@pytest.mark.parametrize("configuration_set", [None, "newsletter-events"])
@pytest.mark.parametrize("tags", [None, {}])
def test_request_is_botocores_byte_for_byte(
    monkeypatch, region, endpoint_url, token, configuration_set, tags
):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FROZEN.replace(tzinfo=None))
    monkeypatch.setattr(ses_transport, "_utcnow", lambda: FROZEN)
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
    )
    client = session.client("sesv2", region_name=region, endpoint_url=endpoint_url)
    message = _message(tags)
    url, headers, body = _botocore_request(client, message, configuration_set)

    transport = SendEmailTransport.for_client(client, session.get_credentials())
    assert transport is not None
    ours = ses_transport.send_email_body(
        message.sender, message.recipient, message.raw, configuration_set, message.tags
    )
    assert transport.url == url
    assert ours == body
    signed = transport.headers(ours)
    for name in ("Authorization", "X-Amz-Date", "Content-Type"):
        assert signed[name] == headers[name], name
    assert signed.get("X-Amz-Security-Token") == headers.get("X-Amz-Security-Token")
    assert ("x-amz-security-token" in signed["Authorization"]) == (token is not None)


def test_pieces_are_base64_encoded_as_the_whole():
    import base64
    import random

    from newsletter.ses_transport import Base64Pieces

    rng = random.Random(13)
    shared = [rng.randbytes(n) for n in (1024, 1025, 1026, 5000, 45001)]
    encoder = Base64Pieces()
    for _ in range(300):
        pieces = []
        for _ in range(rng.randrange(0, 12)):
            if rng.random() < 0.5:
                pieces.append(rng.choice(shared))  # the same objects, at any alignment
            else:
                pieces.append(rng.randbytes(rng.choice((0, 1, 2, 3, 7, 500, 1023, 2000))))
        assert encoder.encode(pieces) == base64.b64encode(b"".join(pieces))
    assert 0 < len(encoder._encoded) <= Base64Pieces.KEEP


def test_a_message_in_pieces_makes_the_same_request(monkeypatch):
    monkeypatch.setattr(ses_transport, "_utcnow", lambda: FROZEN)
    session = boto3.session.Session(aws_access_key_id="AK", aws_secret_access_key="SK")
    client = session.client("sesv2", region_name="eu-west-1")
    transport = SendEmailTransport.for_client(client, session.get_credentials())
    pieces = [b"To: x\r\n", bytes(range(256)) * 20, b"=\r\n", b"ab", bytes(range(256)) * 9]
    raw = b"".join(pieces)
    captured = []
    transport._http = _FakeHttp(_Answer(200, {}, b'{"MessageId": "m"}'))
    for chunks in (None, pieces, pieces):
        assert (
            transport.send(
                sender="a@example.com",
                recipient="b@example.com",
                raw=raw,
                configuration_set="cs",
                tags={"issue": "1"},
                chunks=chunks,
            )
            == "m"
        )
        captured.append(transport._http.requests[-1])
    assert captured[0].body == captured[1].body == captured[2].body
    assert captured[0].headers["Authorization"] == captured[2].headers["Authorization"]


def test_refreshed_credentials_sign_each_call(monkeypatch):
    """Temporary credentials are read per call: a refreshed key signs the next request."""
    monkeypatch.setattr(ses_transport, "_utcnow", lambda: FROZEN)

    class Rotating:
        def __init__(self) -> None:
            self.keys = iter([("AK1", "secret-1", "t1"), ("AK2", "secret-2", "t2")])

        def get_frozen_credentials(self):
            return Credentials(*next(self.keys)).get_frozen_credentials()

    client = boto3.client(
        "sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    transport = SendEmailTransport.for_client(client, Rotating())
    body = b"{}"
    first, second = transport.headers(body), transport.headers(body)
    assert "Credential=AK1/" in first["Authorization"] and first["X-Amz-Security-Token"] == "t1"
    assert "Credential=AK2/" in second["Authorization"] and second["X-Amz-Security-Token"] == "t2"
    for credentials, headers in (
        (Credentials("AK1", "secret-1", "t1"), first),
        (Credentials("AK2", "secret-2", "t2"), second),
    ):
        from botocore.awsrequest import AWSRequest

        monkeypatch.setattr(
            botocore.auth, "get_current_datetime", lambda: FROZEN.replace(tzinfo=None)
        )
        request = AWSRequest(
            "POST", transport.url, data=body, headers={"Content-Type": "application/json"}
        )
        botocore.auth.SigV4Auth(credentials, "ses", "us-east-1").add_auth(request)
        assert headers["Authorization"] == request.headers["Authorization"]


# --- Which path a mailer takes --------------------------------------------------------------


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_send_email_goes_direct_by_default_and_boto3_on_request(credentials):
    assert SesMailer(endpoint_url="http://127.0.0.1:9").direct is not None
    assert SesMailer(endpoint_url="http://127.0.0.1:9", transport="boto3").direct is None
    # A client passed in is the caller's (a botocore Stubber, say): always called itself.
    client = boto3.client("sesv2", region_name="us-east-1")
    assert SesMailer(client=client).direct is None
    with pytest.raises(ValueError, match="unknown SES transport"):
        SesMailer(transport="smtp")


@pytest.mark.parametrize("transport", ["direct", "boto3"])
def test_workers_honour_the_transport_setting(credentials, transport):
    from newsletter.sending import worker_mailer

    config = load_config(
        {"TESTING": True, "MAIL_BACKEND": "ses", "SES_ENDPOINT_URL": "http://127.0.0.1:9"},
        environ={"NEWSLETTER_SES_TRANSPORT": transport},
    )
    mailer = worker_mailer(SesMailer(endpoint_url="http://127.0.0.1:9"), config, 16)
    assert (mailer.direct is not None) == (transport == "direct")


def test_configurations_only_boto3_honours_stay_on_boto3(credentials):
    session = boto3.session.Session()
    plain = session.client("sesv2", region_name="us-east-1")
    assert SendEmailTransport.for_client(plain, session.get_credentials()) is not None
    assert SendEmailTransport.for_client(plain, None) is None  # no credentials (yet)
    unsigned = session.client(
        "sesv2", region_name="us-east-1", config=Config(signature_version=botocore.UNSIGNED)
    )
    assert SendEmailTransport.for_client(unsigned, session.get_credentials()) is None
    odd = session.client("sesv2", region_name="us-east-1", endpoint_url="http://h:1/?x=1")
    assert SendEmailTransport.for_client(odd, session.get_credentials()) is None
    ses_v1 = session.client("ses", region_name="us-east-1")
    assert SendEmailTransport.for_client(ses_v1, session.get_credentials()) is None


def test_the_transport_setting(monkeypatch):
    assert load_config({"TESTING": True}, environ={})["SES_TRANSPORT"] == "direct"
    environ = {"NEWSLETTER_SES_TRANSPORT": "boto3"}
    assert load_config({"TESTING": True}, environ=environ)["SES_TRANSPORT"] == "boto3"
    with pytest.raises(ConfigError, match="NEWSLETTER_SES_TRANSPORT must be 'direct' or 'boto3'"):
        load_config({"TESTING": True}, environ={"NEWSLETTER_SES_TRANSPORT": "fast"})


# --- Errors: read as botocore reads them, classified by the same rules ---------------------

# (status, headers, body) -> the error the sending engine acts on, whichever transport.
ANSWERS = [
    (
        429,
        {"x-amzn-ErrorType": "TooManyRequestsException"},
        b'{"message": "Maximum sending rate exceeded."}',
        ThrottledError,
    ),
    (
        400,
        {"x-amzn-ErrorType": "TooManyRequestsException:http://internal.amazon.com/"},
        b"{}",
        ThrottledError,
    ),
    (
        400,
        {},
        b'{"__type": "com.amazonaws.ses#Throttling", "Message": "Maximum sending rate exceeded."}',
        ThrottledError,
    ),
    (
        400,
        {"X-Amzn-ErrorType": "LimitExceededException"},
        b'{"message": "Daily message quota exceeded."}',
        QuotaExceededError,
    ),
    (400, {}, b'{"code": "SendingPausedException", "message": "paused"}', AccountPausedError),
    (
        404,
        {"x-amzn-ErrorType": "NotFoundException"},
        b'{"message": "no configuration set"}',
        AccountPausedError,
    ),
    (
        400,
        {"x-amzn-ErrorType": "MessageRejected"},
        b'{"message": "Email address is not verified."}',
        RecipientRejectedError,
    ),
    (
        400,
        {"x-amzn-ErrorType": "BadRequestException"},
        b'{"Message": "Missing final @domain"}',
        RecipientRejectedError,
    ),
    (403, {}, b"<html>Forbidden</html>", RecipientRejectedError),
    (400, {}, b"", RecipientRejectedError),
    (
        500,
        {"x-amzn-ErrorType": "InternalFailure"},
        b'{"message": "internal error"}',
        TransientError,
    ),
    (503, {}, b'{"__type": "ServiceUnavailable", "message": "try again"}', TransientError),
    # A 5xx whose body names no cause (a proxy's page, nothing, garbage): maybe taken.
    (500, {}, b"", UnknownOutcomeError),
    (
        502,
        {"Content-Type": "text/html"},
        b"  <html><body>Bad Gateway</body></html>",
        UnknownOutcomeError,
    ),
    (504, {}, b"upstream timed out", UnknownOutcomeError),
    (500, {}, b'{"message": "no code"}', UnknownOutcomeError),
    # JSON that is not an object: botocore's parser fails on it (an unexpected error from
    # the call, so `unknown` with boto3 too).
    (503, {}, b"[1, 2]", UnknownOutcomeError),
    (400, {"x-amzn-ErrorType": "MessageRejected"}, b'"rejected"', UnknownOutcomeError),
]


class _Answer:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, HTTPHeaderDict(headers), body


class _FakeHttp:
    """Stands in for the client's HTTP session: one canned answer or exception."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests = []

    def send(self, request):
        self.requests.append(request)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def _direct(answer) -> tuple[SesMailer, _FakeHttp]:
    mailer = SesMailer(endpoint_url="http://127.0.0.1:9", configuration_set="cs")
    fake = _FakeHttp(answer)
    mailer.direct._http = fake
    return mailer, fake


@pytest.mark.parametrize(("status", "headers", "body", "expected"), ANSWERS)
def test_error_answers_read_as_botocore_reads_them(credentials, status, headers, body, expected):
    # botocore's own parser on the same answer: the code and message we hand to the rules.
    client = boto3.client("sesv2", region_name="us-east-1")
    model = client.meta.service_model.operation_model("SendEmail").output_shape
    answer = {"status_code": status, "headers": HTTPHeaderDict(headers), "body": body}
    try:
        parsed = create_parser("rest-json").parse(answer, model)
    except AttributeError:
        assert error_of(status, HTTPHeaderDict(headers), body) is None
    else:
        assert error_of(status, HTTPHeaderDict(headers), body) == (
            parsed["Error"]["Code"],
            parsed["Error"]["Message"],
        )
    mailer, fake = _direct(_Answer(status, headers, body))
    with pytest.raises(expected):
        mailer.send(_message())
    assert len(fake.requests) == 1


# Exceptions of the client's HTTP session (botocore's, translated from urllib3's).
_URL = "http://127.0.0.1:9/v2/email/outbound-emails"
FAILURES = [
    # Before the request was written: SES provably did not take it.
    (boto.EndpointConnectionError(endpoint_url=_URL, error="refused"), TransientError, "connect"),
    (boto.ConnectTimeoutError(endpoint_url=_URL, error="timed out"), TransientError, "connect"),
    (
        boto.ProxyConnectionError(proxy_url="http://proxy:3128", error="x"),
        TransientError,
        "connect",
    ),
    (boto.NoCredentialsError(), AccountPausedError, "credentials"),
    # After it may have been: never a second copy.
    (
        boto.ReadTimeoutError(endpoint_url=_URL, error="read timed out"),
        UnknownOutcomeError,
        "network",
    ),
    (boto.ConnectionClosedError(endpoint_url=_URL), UnknownOutcomeError, "network"),
    (boto.HTTPClientError(error="reset by peer"), UnknownOutcomeError, "network"),
    (boto.SSLError(endpoint_url=_URL, error="bad record"), UnknownOutcomeError, "network"),
]


@pytest.mark.parametrize(("failure", "expected", "code"), FAILURES)
def test_network_failures_follow_the_outcome_rules(credentials, failure, expected, code):
    mailer, _ = _direct(failure)
    with pytest.raises(expected) as raised:
        mailer.send(_message())
    assert raised.value.code == code


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"{}", b'{"MessageId": ""}', b'{"MessageId": 7}', b"[]"]
)
def test_a_success_without_a_message_id_is_unknown(credentials, body):
    mailer, _ = _direct(_Answer(200, {}, body))
    with pytest.raises(UnknownOutcomeError):
        mailer.send(_message())


def test_the_request_sent(credentials):
    mailer, fake = _direct(_Answer(200, {}, b'{"MessageId": "0100-abc"}'))
    assert mailer.send(_message()) == "0100-abc"
    (request,) = fake.requests
    assert request.method == "POST" and request.url == _URL
    assert request.headers["User-Agent"].endswith("md/newsletter#sendemail-direct")
    assert request.headers["Content-Length"] == str(len(request.body))
    assert request.stream_output is False


# --- Over real sockets: the tests' SES server, both transports alike -----------------------


@pytest.fixture
def ses_fake(credentials):
    from sesfake import SesFake

    fake = SesFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("transport", ["direct", "boto3"])
@pytest.mark.parametrize(
    ("kind", "expected", "taken"),
    [
        (None, None, True),
        ("throttle", ThrottledError, False),
        ("reject", RecipientRejectedError, False),
        ("quota", QuotaExceededError, False),
        ("paused", AccountPausedError, False),
        ("error500", TransientError, False),
        ("bare500", UnknownOutcomeError, False),
        ("drop", UnknownOutcomeError, True),  # taken, then the connection is closed
        ("reset", UnknownOutcomeError, True),  # taken, then reset
        ("late", UnknownOutcomeError, True),  # taken, answered after the read timeout
        ("hang", UnknownOutcomeError, False),  # a read timeout: the client cannot know
    ],
)
def test_each_answer_over_http(ses_fake, transport, kind, expected, taken):
    if kind is not None:
        ses_fake.misbehave(kind, seconds=1.5)
    mailer = SesMailer(
        endpoint_url=ses_fake.url, configuration_set="cs", timeout=0.5, transport=transport
    )
    assert (mailer.direct is not None) == (transport == "direct")
    if expected is None:
        message_id = mailer.send(_message())
        assert message_id == ses_fake.accepted[0].message_id
    else:
        with pytest.raises(expected):
            mailer.send(_message())
    assert len(ses_fake.accepted) == (1 if taken else 0)
    assert ses_fake.requests == 1  # nothing retried behind the ledger's back
    if taken:
        (accepted,) = ses_fake.accepted
        assert accepted.raw == RAW and accepted.recipients == ["b@example.com"]
        assert accepted.tags == {"issue": "7", "delivery": "42", "list": "weekly"}
        assert accepted.configuration_set == "cs"


@pytest.mark.parametrize("transport", ["direct", "boto3"])
def test_connection_refused_is_not_taken(credentials, transport):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        mailer = SesMailer(endpoint_url=f"http://127.0.0.1:{port}", transport=transport)
        with pytest.raises(TransientError) as raised:
            mailer.send(_message())
    assert raised.value.code == "connect"


def test_moto_receives_a_direct_message(moto_ses):
    mailer = SesMailer(endpoint_url=moto_ses.url, configuration_set=None)
    assert mailer.direct is not None
    message = build_message(
        from_address="news@example.com",
        from_name="News",
        to_address="reader@example.org",
        subject="Direct",
        text="Hello over a signed request.",
        tags={"issue": "1", "delivery": "2"},
    )
    message_id = mailer.send(message)
    (sent,) = moto_ses.sent_messages()
    assert sent["id"] == message_id
    assert sent["destinations"] == ["reader@example.org"] or "reader@example.org" in str(
        sent["destinations"]
    )
    assert sent["raw_data"].replace("\r\n", "\n") == message.raw.decode().replace("\r\n", "\n")
