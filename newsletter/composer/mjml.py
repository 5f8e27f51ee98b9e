"""The only module that knows which MJML compiler and CSS inliner are used."""

from __future__ import annotations

import mjml
from premailer import Premailer

DOCTYPE = "<!doctype html>"


def compile_mjml(source: str) -> str:
    """Compile MJML to email HTML with CSS inlined, keeping @media rules and the doctype."""
    html = mjml.mjml2html(source, disable_comments=True)
    inlined = Premailer(
        html,
        allow_network=False,
        keep_style_tags=True,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level="CRITICAL",
    ).transform()
    # premailer drops the doctype; email clients need it for standards mode.
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = f"{DOCTYPE}\n{inlined}"
    return inlined
