"""The console's subscribers pages."""

from __future__ import annotations

from flask import render_template

from newsletter.web.admin import bp


@bp.get("/subscribers", endpoint="subscribers")
def subscribers():
    """Placeholder page (being built)."""
    return render_template("admin/placeholder.html", title="subscribers")
