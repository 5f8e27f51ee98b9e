"""The only module that knows which MJML compiler and CSS inliner are used."""

from __future__ import annotations

import functools
import re

import minify_html
import mjml
from premailer import Premailer

DOCTYPE = "<!doctype html>"

_STYLE_RE = re.compile(r"<style([^>]*)>(.*?)</style>", re.DOTALL)
# MRML copies the email's title into the wrapper's aria-label through Rust's escape_debug:
# combining marks and format characters come out as \u{64f} (Arabic vowel signs, Hebrew
# points, a right-to-left mark), a backslash doubled, and a quote backslashed, which ends
# the attribute early. Screen readers read that label aloud: it is turned back into text.
_ARIA_LABEL_RE = re.compile(r'(<div aria-label=")((?:[^"\\]|\\.)*)(")', re.DOTALL)
_RUST_ESCAPE_RE = re.compile(r"\\(?:u\{([0-9a-fA-F]{1,6})\}|(.))", re.DOTALL)
_RUST_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "0": ""}
_INLINE_MJ_STYLE_RE = re.compile(r"<mj-style\s+inline=\"inline\"\s*>(.*?)</mj-style>", re.DOTALL)


class _Premailer(Premailer):
    """Premailer that turns each stylesheet into rules once per process, not once per email.

    The stylesheet comes from the template, so it is the same for every issue; premailer
    caches the CSS parse but re-serialises every rule with cssutils on each call, which was
    a third of its time. The rules it returns are plain tuples; leftovers are only read.
    """

    def _parse_style_rules(self, css_body, ruleset_index):
        return _style_rules(css_body, ruleset_index, self.disable_validation)


@functools.lru_cache(maxsize=64)
def _style_rules(css_body: str, ruleset_index: int, disable_validation: bool):
    parser = Premailer("", disable_validation=disable_validation, strip_important=False)
    return Premailer._parse_style_rules(parser, css_body, ruleset_index)


def compile_mjml(source: str) -> str:
    """Compile MJML to email HTML: <mj-style inline="inline"> rules inlined, the rest kept.

    That is Node MJML's behaviour (mjml-python leaves inline styles in <style>). Only those
    rules go through premailer: MJML's own reset rules and @media blocks stay in the head as
    MJML wrote them, which keeps the inliner's work (and time) small.
    """
    # fonts={}: no Google Fonts <link>/@import for names like Roboto in a font stack; the
    # email uses system fonts, and a remote stylesheet is a tracking request per open.
    html = mjml.mjml2html(source, disable_comments=True, fonts={})
    html = _ARIA_LABEL_RE.sub(_readable_label, html, count=1)
    inline_css = {css.strip() for css in _INLINE_MJ_STYLE_RE.findall(source)}
    if inline_css:

        def mark(match: re.Match[str]) -> str:
            if match.group(2).strip() in inline_css:
                return match.group(0)
            return f'<style data-premailer="ignore"{match.group(1)}>{match.group(2)}</style>'

        html = _Premailer(
            _STYLE_RE.sub(mark, html),
            allow_network=False,
            align_floating_images=False,  # no floats here; saves a CSS parse per image
            keep_style_tags=False,  # leftovers (@media, :hover) stay in a <style>
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level="CRITICAL",
            # No width/bgcolor/align/... attributes copied from the CSS: on <p>, <code> or
            # <img> they are invalid HTML, and the inline style already says it.
            disable_basic_attributes=["align", "valign", "bgcolor", "width", "height"],
        ).transform()
    # premailer drops the doctype; email clients need it for standards mode.
    if not html.lstrip().lower().startswith("<!doctype"):
        html = f"{DOCTYPE}\n{html}"
    return minify(html)


def _readable_label(match: re.Match[str]) -> str:
    def one(escape: re.Match[str]) -> str:
        if escape.group(1):
            return chr(int(escape.group(1), 16))
        return _RUST_ESCAPES.get(escape.group(2), escape.group(2))

    text = _RUST_ESCAPE_RE.sub(one, match.group(2)).replace('"', "&quot;")
    return f"{match.group(1)}{text}{match.group(3)}"


def minify(html: str) -> str:
    """Minify email HTML with minify-html, keeping what email clients rely on.

    Outlook's conditional comments stay (keep_comments; MJML's other comments are gone
    already), closing tags and <html>/<head> stay, and CSS is left alone: its minifier
    rewrites media queries into range syntax ((width>=480px)) that mail clients ignore.
    Our {{nl:...}} markers survive (preserve_brace_template_syntax).
    """
    return minify_html.minify(
        html,
        keep_closing_tags=True,
        keep_html_and_head_opening_tags=True,
        keep_comments=True,
        minify_css=False,
        minify_js=False,
        minify_doctype=False,
        preserve_brace_template_syntax=True,
    )
