"""The console's imports pages."""

from __future__ import annotations

from flask import render_template

from newsletter.web.admin import bp


@bp.get("/import", endpoint="import_form")
def import_form():
    """Placeholder page (being built)."""
    return render_template("admin/placeholder.html", title="imports")
