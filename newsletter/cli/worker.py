"""`newsletter worker`: deliver queued issues; run as many as you like against PostgreSQL."""

from __future__ import annotations

import gc
import time

import click
from tqdm import tqdm

from newsletter import sending
from newsletter.cli import CliState
from newsletter.cli import pass_state
from newsletter.config import MAX_SEND_CONCURRENCY
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.pacing import PaceSettings
from newsletter.pacing import decide_settings
from newsletter.pacing import quota_source_for


def run_worker(
    state: CliState,
    *,
    issue_id: int | None = None,
    until_idle: bool = False,
    concurrency: int | None = None,
    pace: PaceSettings | None = None,
) -> sending.Progress:
    """Run one delivery worker in this process, with a progress bar on the terminal
    (`pace`: settings the caller already decided, so the SES quota is not read twice)."""
    import sqlalchemy as sa

    config = state.config
    settings = sending.WorkerSettings.from_config(config, concurrency=concurrency)
    mailer = sending.worker_mailer(state.mailer, config, settings.concurrency)
    source = quota_source_for(mailer)
    if pace is None:
        pace = decide_settings(config.get("SEND_RATE"), source)

    with state.transaction() as session:
        query = sa.select(sa.func.count()).where(Delivery.status == DeliveryStatus.QUEUED)
        if issue_id is not None:
            query = query.where(Delivery.issue_id == issue_id)
        total = session.scalar(query) or 0

    pace_words = f"at up to {pace.max_rate:g}/s" if pace.max_rate else "with no rate limit"
    click.echo(
        f"Sending {pace_words}, at most {settings.concurrency} in flight. Ctrl-C stops cleanly."
    )
    # A bar only on a terminal (disable=None): in a file or the journal it is one "\r" line.
    bar = tqdm(total=total, unit="msg", dynamic_ncols=True, smoothing=0.1, disable=None)

    shown = [0.0]

    def on_progress(progress: sending.Progress) -> None:
        # Called on every round of the loop: drawing the bar each time cost more than
        # sending (about 2 ms a message); draw it at most ten times a second.
        now = time.monotonic()
        if now - shown[0] < 0.1:
            return
        shown[0] = now
        done = progress.sent + progress.failed + progress.suppressed
        if done > bar.total:
            bar.total = done
        bar.n = done
        bar.set_postfix(sent=progress.sent, failed=progress.failed, refresh=False)
        bar.refresh()

    worker = sending.DeliveryWorker(
        state.database,
        mailer,
        config,
        pace,
        settings=settings,
        quota_source=source,
        issue_id=issue_id,
        on_progress=on_progress,
    )
    if not config.get("TESTING"):
        # What is loaded by now (modules, the app, the compiled issue) lives as long as the
        # process: out of the cyclic collector's sight, it costs no GC pauses while sending
        # and no 0.3 s final collection at exit.
        gc.freeze()
    try:
        progress = worker.run(until_idle=until_idle)
    finally:
        shown[0] = 0.0  # the last figures, whatever the time
        on_progress(worker.progress)
        bar.close()
    stopped = worker.stopping
    if progress.lost:
        raise click.ClickException(
            f"This worker stopped sending at once: {progress.lost}. Nothing was sent twice; "
            "start a worker again if there is more to send."
        )
    click.echo(
        f"Sent {progress.sent}, failed {progress.failed}, suppressed {progress.suppressed}, "
        f"retrying later {progress.retried}, throttled {progress.throttled}."
    )
    if stopped:
        click.echo("Stopped. Run `newsletter worker` or `newsletter send` again to go on.")
    return progress


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_SEND_CONCURRENCY),
    default=None,
    help="Most messages in flight at once in this process; it keeps as many as the rate "
    "needs at the measured SES latency (default: NEWSLETTER_SEND_CONCURRENCY, 256).",
)
@click.option("--once", is_flag=True, help="Exit when nothing is left to send.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics over HTTP on this port (no token: firewall it).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics port listens on.",
)
@pass_state
def worker(
    state: CliState,
    concurrency: int | None,
    once: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Deliver issues: claims queued messages and sends them at the shared SES rate.

    Run one per machine or more; with PostgreSQL they share the work and the rate.
    Scheduled issues start when due. Ctrl-C finishes the messages in flight and stops.
    """
    if metrics_port is not None:
        from newsletter import metrics

        metrics.serve(state.database, metrics_port, metrics_host)
        click.echo(f"Metrics on http://{metrics_host}:{metrics_port}/metrics")
    progress = run_worker(state, until_idle=once, concurrency=concurrency)
    for issue_id, reason in progress.paused.items():
        click.echo(f"Issue {issue_id} paused: {reason}", err=True)


COMMANDS = [worker]
