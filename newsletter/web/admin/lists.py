"""The console's lists pages."""

from __future__ import annotations

from flask import render_template

from newsletter.web.admin import bp


@bp.get("/lists", endpoint="lists")
def lists():
    """Placeholder page (being built)."""
    return render_template("admin/placeholder.html", title="lists")
