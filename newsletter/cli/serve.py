"""`newsletter serve`: the development server."""

from __future__ import annotations

import click

from newsletter.cli import CliState
from newsletter.cli import pass_state


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, help="Port to listen on.")
@click.option("--debug/--no-debug", default=False, help="Reload on code changes.")
@pass_state
def serve(state: CliState, host: str, port: int, debug: bool) -> None:
    """Run the development web server (use gunicorn with wsgi:app in production)."""
    click.echo(f"Serving on http://{host}:{port}/ (Ctrl-C to stop)")
    state.app.run(host=host, port=port, debug=debug, use_reloader=debug)


COMMANDS = [serve]
