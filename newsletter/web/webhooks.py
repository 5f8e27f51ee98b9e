"""POST /webhooks/ses: SES bounces, complaints and deliveries, delivered by Amazon SNS."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import request

from newsletter import feedback
from newsletter import metrics
from newsletter.sns import CertificateUnavailable
from newsletter.sns import SnsError
from newsletter.sns import SnsGateway
from newsletter.web import commit
from newsletter.web import db_session

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# An SNS message is at most 256 KiB; JSON escaping of the SES event inside it can nearly
# double that. Anything larger is not from SNS.
MAX_BODY = 768 * 1024
GATEWAY = "newsletter.sns"


def gateway() -> SnsGateway:
    """Return the app's SNS gateway (tests and benchmarks may replace its fetchers)."""
    return current_app.extensions[GATEWAY]


def _text(status: int, text: str):
    response = current_app.make_response((text + "\n", status))
    response.mimetype = "text/plain"
    return response


@bp.post("/ses")
def ses():
    """Accept one SNS message: verify it, apply the SES event once, answer 200."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        log.warning(
            "SNS post from %s refused: %s bytes", request.remote_addr, request.content_length
        )
        metrics.WEBHOOK_FAILURES.labels(reason="TooLarge").inc()
        return _text(413, "body too large")
    # SNS posts text/plain: read the raw bytes, never request.get_json() (415 on text/plain).
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        log.warning("SNS post from %s refused: body over %s bytes", request.remote_addr, MAX_BODY)
        metrics.WEBHOOK_FAILURES.labels(reason="TooLarge").inc()
        return _text(413, "body too large")
    session = db_session()
    try:
        receipt = feedback.receive_sns(
            session, gateway(), body, feedback.Policy.from_config(current_app.config)
        )
    except SnsError as exc:
        log.warning(
            "SNS post from %s refused (%s): %s", request.remote_addr, type(exc).__name__, exc
        )
        metrics.WEBHOOK_FAILURES.labels(reason=type(exc).__name__).inc()
        return _text(exc.status_code, str(exc))
    except CertificateUnavailable as exc:
        log.error("SNS post from %s not processed: %s", request.remote_addr, exc)
        metrics.WEBHOOK_FAILURES.labels(reason="CertificateUnavailable").inc()
        return _text(503, "try again later")
    commit()
    metrics.sns_received(receipt.event_type, receipt.outcome)
    return _text(200, receipt.outcome)


def init_app(app: Flask) -> None:
    """Register the webhook and its SNS gateway (the console alone checks CSRF tokens)."""
    app.extensions[GATEWAY] = SnsGateway.from_config(app.config)
    app.register_blueprint(bp)
