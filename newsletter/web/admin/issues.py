"""The console's issues pages."""

from __future__ import annotations

from flask import render_template

from newsletter.web.admin import bp


@bp.get("/issues", endpoint="issues")
def issues():
    """Placeholder page (being built)."""
    return render_template("admin/placeholder.html", title="issues")
