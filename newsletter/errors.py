"""The root of the domain exceptions, which the web and CLI edges turn into 4xx pages and exit 1."""

from __future__ import annotations


class NewsletterError(Exception):
    """A user-facing failure: the message is shown as it is, without a traceback."""

    status_code = 400


class NotFound(NewsletterError):
    """The thing named does not exist."""

    status_code = 404
