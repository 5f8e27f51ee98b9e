"""Liveness for load balancers."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import jsonify

from newsletter.web import db_session

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer 200 when the database answers, 503 otherwise."""
    try:
        db_session().execute(sa.text("SELECT 1"))
    except Exception:  # any failure to reach the database is "not healthy"
        return jsonify(status="unavailable", database="down"), 503
    return jsonify(status="ok", database="up")
