"""`newsletter serve`: the development server."""

from __future__ import annotations

import os

import click

from newsletter.cli import CliState
from newsletter.cli import pass_state


def local_base_url(host: str, port: int) -> str:
    """The URL a browser on this machine uses for the server (links in emails point here)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, help="Port to listen on.")
@click.option("--debug/--no-debug", default=False, help="Reload on code changes.")
@pass_state
def serve(state: CliState, host: str, port: int, debug: bool) -> None:
    """Run the development web server (use gunicorn with wsgi:app in production).

    With NEWSLETTER_ENV=development and no NEWSLETTER_BASE_URL, links in the emails it
    sends (confirmation, unsubscribe) point at this server's host and port.
    """
    state.web = True
    app = state.app
    if app.config["ENV"] == "development" and not os.environ.get("NEWSLETTER_BASE_URL"):
        app.config["BASE_URL"] = local_base_url(host, port)
    click.echo(f"Serving on http://{host}:{port}/ (Ctrl-C to stop)")
    click.echo(f"Links in emails point at {app.config['BASE_URL']}")
    app.run(host=host, port=port, debug=debug, use_reloader=debug)


COMMANDS = [serve]
