"""GET /metrics: Prometheus metrics, only with NEWSLETTER_METRICS_TOKEN as a Bearer token."""

from __future__ import annotations

import hmac

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import request

from newsletter import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def exposition():
    """Serve the metrics to a scraper that sends `Authorization: Bearer <token>`.

    Without a configured token there is no /metrics at all (404), so a deployment that
    never set one exposes nothing.
    """
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), str(token).encode()
    ):
        response = current_app.make_response(("Bearer token required\n", 401))
        response.mimetype = "text/plain"
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition(
        current_app.extensions["newsletter.db"], request.headers.get("Accept")
    )
    response = current_app.make_response((body, 200))
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response
