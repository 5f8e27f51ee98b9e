"""The only module that knows which MJML compiler and CSS inliner are used."""

from __future__ import annotations

import mjml
from premailer import Premailer

DOCTYPE = "<!doctype html>"


def compile_mjml(source: str) -> str:
    """Compile MJML to email HTML with CSS inlined, keeping @media rules and the doctype."""
    # fonts={}: no Google Fonts <link>/@import for names like Roboto in a font stack; the
    # email uses system fonts, and a remote stylesheet is a tracking request per open.
    html = mjml.mjml2html(source, disable_comments=True, fonts={})
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
