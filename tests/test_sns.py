"""SNS signature verification and URL checks, without the web layer."""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sns_fixtures import CERT_URL
from sns_fixtures import TOPIC_ARN
from sns_fixtures import SnsSigner
from sns_fixtures import notification

from newsletter import sns


def gateway(signer: SnsSigner, fetched: list[str] | None = None) -> sns.SnsGateway:
    def fetch(url: str) -> bytes:
        if fetched is not None:
            fetched.append(url)
        return signer.fetch(url)

    return sns.SnsGateway(
        topic_arns=frozenset({TOPIC_ARN}), certificates=sns.CertificateStore(fetch=fetch)
    )


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("https://sns.us-gov-west-1.amazonaws.com/x.pem", True),
        ("http://sns.us-west-2.amazonaws.com/x.pem", False),
        ("https://sns.us-west-2.amazonaws.com:443/x.pem", False),
        ("https://user@sns.us-west-2.amazonaws.com/x.pem", False),
        ("https://sns.us-west-2.amazonaws.com.evil.com/x.pem", False),
        ("https://evil.com/sns.us-west-2.amazonaws.com/x.pem", False),
        ("https://sns-bucket.s3.amazonaws.com/x.pem", False),
        ("https://sns.eu.amazonaws.com/x.pem", False),  # region part under 3 characters
        ("https://sns.us-west-2.amazonaws.com/x.pem.txt", False),
        ("https://sns.us-west-2.amazonaws.com/x", False),
        ("https://[::1/x.pem", False),
        ("", False),
    ],
)
def test_certificate_url_checks(url, ok):
    if ok:
        sns.check_certificate_url(url)
    else:
        with pytest.raises(sns.ForgedMessage):
            sns.check_certificate_url(url)


def test_string_to_sign_uses_the_documented_keys_in_order():
    message = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": TOPIC_ARN,
        "Subject": "Hello",
        "Message": "line one\nline two",
        "Timestamp": "2026-03-02T09:00:00.000Z",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        "SignatureVersion": "2",
    }
    assert sns.string_to_sign(message) == (
        b"Message\nline one\nline two\nMessageId\nm-1\nSubject\nHello\n"
        b"Timestamp\n2026-03-02T09:00:00.000Z\nTopicArn\n" + TOPIC_ARN.encode() + b"\n"
        b"Type\nNotification\n"
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_verifies_with_subject_and_escaped_newlines(sns_signer, version):
    message = notification(sns_signer, {"eventType": "Open"}, version="2")
    message["Subject"] = "Amazon SES Email Event Notification"
    message["Message"] = '{"eventType": "Open",\n "x": "é"}'
    signed = json.dumps(sns_signer.sign(message, version)).encode()
    assert sns.parse_message(signed)["Subject"] == message["Subject"]
    assert gateway(sns_signer).verify(signed)["Message"] == message["Message"]
    message["Subject"] = "Changed"
    with pytest.raises(sns.ForgedMessage):
        gateway(sns_signer).verify(json.dumps(message).encode())


def test_certificates_are_cached_per_url(sns_signer):
    fetched: list[str] = []
    checker = gateway(sns_signer, fetched)
    for _ in range(3):
        checker.verify(json.dumps(notification(sns_signer, {"eventType": "Open"})).encode())
    assert fetched == [CERT_URL]
    other_url = CERT_URL.replace("0000test", "0001test")
    message = notification(sns_signer, {"eventType": "Open"})
    message["SigningCertURL"] = other_url
    with pytest.raises(sns.CertificateUnavailable):
        checker.verify(json.dumps(sns_signer.sign(message)).encode())
    assert fetched == [CERT_URL, other_url]


def test_forged_certificate_url_is_never_fetched(sns_signer):
    fetched: list[str] = []
    message = notification(sns_signer, {"eventType": "Open"})
    message["SigningCertURL"] = "https://attacker.example.com/cert.pem"
    with pytest.raises(sns.ForgedMessage):
        gateway(sns_signer, fetched).verify(json.dumps(message).encode())
    assert fetched == []


def test_expired_or_non_pem_certificates_are_refused(sns_signer):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(sns_signer.key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2019, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2020, 1, 1, tzinfo=UTC))
        .sign(sns_signer.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    body = json.dumps(notification(sns_signer, {"eventType": "Open"})).encode()
    for pem in (expired, b"not a certificate"):
        checker = sns.SnsGateway(
            topic_arns=frozenset({TOPIC_ARN}),
            certificates=sns.CertificateStore(fetch=lambda url, pem=pem: pem),
        )
        with pytest.raises(sns.ForgedMessage):
            checker.verify(body)


def test_gateway_from_config():
    built = sns.SnsGateway.from_config(
        {"SNS_TOPIC_ARNS": f" {TOPIC_ARN} , arn:aws:sns:us-east-1:1:other,", "SNS_MAX_AGE": 3600}
    )
    assert built.topic_arns == {TOPIC_ARN, "arn:aws:sns:us-east-1:1:other"}
    assert built.max_age == timedelta(hours=1)
    assert sns.SnsGateway.from_config({"SNS_TOPIC_ARNS": (), "SNS_MAX_AGE": 0}).max_age is None


def test_no_topics_configured_rejects_everything(sns_signer):
    checker = sns.SnsGateway(
        topic_arns=frozenset(), certificates=sns.CertificateStore(lambda u: b"")
    )
    with pytest.raises(sns.UnknownTopic):
        checker.verify(json.dumps(notification(sns_signer, {"eventType": "Open"})).encode())


def test_app_reads_topic_arns_from_the_environment(app_config, monkeypatch):
    from newsletter import create_app

    monkeypatch.setenv("NEWSLETTER_SNS_TOPIC_ARNS", TOPIC_ARN)
    monkeypatch.setenv("NEWSLETTER_SNS_MAX_AGE", "600")
    app = create_app(app_config)
    try:
        built = app.extensions["newsletter.sns"]
        assert built.topic_arns == {TOPIC_ARN}
        assert built.max_age == timedelta(minutes=10)
        assert built.certificates.fetch is sns.fetch_https  # production: verified HTTPS only
    finally:
        app.extensions["newsletter.db"].dispose()


@pytest.mark.parametrize(
    ("code", "error"), [(404, sns.ForgedMessage), (503, sns.CertificateUnavailable)]
)
def test_certificate_fetch_errors(sns_signer, code, error):
    import urllib.error

    def fetch(url: str) -> bytes:
        raise urllib.error.HTTPError(url, code, "answer", {}, None)

    checker = sns.SnsGateway(
        topic_arns=frozenset({TOPIC_ARN}), certificates=sns.CertificateStore(fetch=fetch)
    )
    with pytest.raises(error):
        checker.verify(json.dumps(notification(sns_signer, {"eventType": "Open"})).encode())


def test_null_subject_counts_as_absent(sns_signer):
    message = notification(sns_signer, {"eventType": "Open"})
    message["Subject"] = None  # signed without a Subject line
    assert gateway(sns_signer).verify(json.dumps(message).encode())["Subject"] is None
