"""The console's dashboard pages."""

from __future__ import annotations

from flask import render_template

from newsletter.web.admin import bp


@bp.get("/", endpoint="dashboard")
def dashboard():
    """Placeholder page (being built)."""
    return render_template("admin/placeholder.html", title="dashboard")
