"""`newsletter workers`: the delivery workers, their heartbeat and what each holds."""

from __future__ import annotations

import click

from newsletter.cli import CliState
from newsletter.cli import pass_state


@click.command("workers")
@click.option("--all", "everyone", is_flag=True, help="Also list stopped and lost workers.")
@pass_state
def workers(state: CliState, everyone: bool) -> None:
    """List the delivery workers: where each runs, its last heartbeat, the messages it holds.

    Read-only. A worker silent for longer than NEWSLETTER_WORKER_LEASE seconds is shown as
    overdue: the next worker to look recovers its messages (sending ones become unknown).
    """
    from newsletter import workers as workers_core

    lease = float(state.config["WORKER_LEASE"])
    with state.transaction() as session:
        views = workers_core.list_workers(session, lease=lease, everyone=everyone)
        if not views:
            click.echo("No workers running." if not everyone else "No workers yet.")
            if not everyone:
                click.echo("Start one with `newsletter worker` (any number, on any machine).")
            return
        for view in views:
            worker = view.worker
            state_word = worker.status.value
            if view.overdue:
                state_word = f"overdue (silent for more than the {lease:g} s lease)"
            click.echo(
                f"{worker.id}\t{worker.hostname}\tpid {worker.pid}\t{state_word}\t"
                f"heartbeat {workers_core.age(view.silent_for)} ago\t"
                f"{worker.concurrency} at a time\tstarted {workers_core.when(worker.started_at)}"
            )
            if not view.holds:
                click.echo("  holds nothing")
            for issue_id, counts in sorted(view.holds.items()):
                click.echo(
                    f"  issue {issue_id}: {counts.get('sending', 0)} sending, "
                    f"{counts.get('queued', 0)} claimed"
                )


COMMANDS = [workers]
