"""The console's issue pages: paste or upload an issue, preview it, test it, send it, watch it.

The flow: the issues page (figures of every send, and the "New issue" form) -> POST checks
the YAML (errors inline, the text kept) and stores a draft -> the draft page (desktop and
phone previews, "Send a test to me", "Send to list" / "Schedule") -> the confirmation step
(list, audience, subject) -> the issue page, which follows the send live.

Delivery: a `newsletter worker` that is running delivers the send. When none runs (the
laptop mode: `newsletter serve` alone), the web process delivers it itself in a background
thread (newsletter.background).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from newsletter import clock
from newsletter import drafts
from newsletter import progress
from newsletter import sending
from newsletter.background import BackgroundDelivery
from newsletter.composer import IssueFileError
from newsletter.composer.issue_file import MAX_FILE_BYTES
from newsletter.config import settings_of
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.lists import all_lists
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.web import commit
from newsletter.web import database
from newsletter.web import db_session
from newsletter.web import mailer
from newsletter.web.admin import bp
from newsletter.web.admin import current_user
from newsletter.web.admin.subscribers import page_cursors
from newsletter.web.preview import FRAME_CSP

PASTED_NAME = "pasted.yaml"
ERROR_RE = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?P<where>[^:]*): (?P<problem>.*)$", re.S)


# --- helpers --------------------------------------------------------------------------------


def background() -> BackgroundDelivery:
    """Return the app's in-process delivery (one per app)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get("newsletter.background")
    if found is None:
        found = app.extensions["newsletter.background"] = BackgroundDelivery(
            database(), mailer(), app.config
        )
    return found


def _lease() -> float:
    return float(settings_of(current_app.config).worker_lease)


def _split_error(message: str) -> dict[str, str]:
    """Split "FILE:LINE: path: message" for the table; keep the whole text too."""
    match = ERROR_RE.match(message)
    if not match:
        return {"line": "", "where": "", "problem": message, "text": message}
    return {**match.groupdict(), "text": message}


def _source_name(filename: str | None) -> str:
    name = Path((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable() and ch not in "<>\"'")[:100].strip()
    return name or "upload.yaml"


def _read_upload() -> tuple[str | None, str | None, list[str]]:
    """Return (text, source name, errors) of an uploaded file, or Nones when none came."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return None, None, []
    name = _source_name(upload.filename)
    raw = upload.stream.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        return None, name, [f"{name}:1: file: too large (at most 1 MB)"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, name, [f"{name}:{line}: file: not UTF-8 text"]
    return text.removeprefix("\ufeff"), name, []


def _parse_at(value: str) -> datetime | None:
    """Parse the schedule field (a datetime-local value, in UTC); raise NewsletterError."""
    if not value.strip():
        return None
    try:
        return clock.parse_schedule(value)
    except ValueError as exc:
        raise NewsletterError(str(exc)) from None


def _load(token: str) -> drafts.Draft:
    return drafts.load_draft(db_session(), token)


def _plan(draft: drafts.Draft) -> sending.SendPlan:
    return sending.plan_send_text(
        db_session(),
        draft.text,
        draft.list_slug,
        base_url=current_app.config["BASE_URL"],
        source_name=draft.source_name,
    )


def _issue_or_404(issue_id: int) -> Issue:
    issue = db_session().get(Issue, issue_id)
    if issue is None:
        abort(404, "There is no such issue.")
    return issue


def _index(
    *,
    errors: list[str] | None = None,
    text: str = "",
    list_slug: str = "",
    status: int = 200,
) -> Any:
    session = db_session()
    lists = all_lists(session)
    if not list_slug and len(lists) == 1:
        list_slug = lists[0].slug
    after, before, last = page_cursors() if status == 200 else (None, None, False)
    sends = progress.sends_page(
        session,
        after=after,
        before=before,
        last=last,
        size=current_app.config.get("ADMIN_SENDS_PAGE_SIZE", progress.SENDS_PAGE_SIZE),
        lease=_lease(),
    )
    page = render_template(
        "admin/issues.html",
        sends=sends,
        figures=sends.rows,
        links=_sends_links(sends),
        paged=after is not None or before is not None or last,
        lists=lists,
        errors=[_split_error(e) for e in errors or []],
        text=text,
        list_slug=list_slug,
    )
    commit()  # rows of lost workers, marked unknown while counting
    return page, status


def _sends_links(sends: progress.SendsPage) -> dict[str, str | None]:
    """The pager's links for the sends (None where there is no such page)."""
    links: dict[str, str | None] = dict.fromkeys(("first", "prev", "next", "last"))
    if sends.has_prev:
        links["first"] = url_for("admin.issues")
        links["prev"] = url_for("admin.issues", before=sends.first_id)
    if sends.has_next:
        links["next"] = url_for("admin.issues", after=sends.last_id)
        links["last"] = url_for("admin.issues", last=1)
    return links


# --- the issues page and new drafts ---------------------------------------------------------


@bp.get("/issues", endpoint="issues")
def issues():
    """Show every recent send with its figures, and the form for a new issue."""
    text, list_slug = "", request.args.get("list", "")[:64]
    token = request.args.get("draft", "")
    if token:
        # "Edit" on a draft: its text comes back into the form.
        draft = _load(token)
        text, list_slug = draft.text, draft.list_slug
    return _index(text=text, list_slug=list_slug)


@bp.post("/issues", endpoint="issue_create")
def issue_create():
    """Check the pasted or uploaded YAML; store it as a draft, or show the errors inline."""
    list_slug = request.form.get("list", "")[:64].strip()
    pasted = request.form.get("yaml", "")
    text, name, errors = _read_upload()
    if text is None and not errors:
        text, name = pasted.replace("\r\n", "\n"), PASTED_NAME
    if errors:
        return _index(errors=errors, text=pasted, list_slug=list_slug, status=400)
    if not text.strip():
        errors = ["Paste the issue's YAML into the box, or choose a .yaml file."]
    elif not list_slug:
        errors = ["Choose the list the issue is for."]
    if errors:
        return _index(errors=errors, text=text, list_slug=list_slug, status=400)
    try:
        sending.plan_send_text(
            db_session(),
            text,
            list_slug,
            base_url=current_app.config["BASE_URL"],
            source_name=name,
        )
    except IssueFileError as exc:
        return _index(errors=exc.errors, text=text, list_slug=list_slug, status=400)
    except NotFound as exc:
        return _index(errors=[str(exc)], text=text, list_slug=list_slug, status=400)
    draft = drafts.save_draft(
        db_session(),
        text=text,
        list_slug=list_slug,
        source_name=name,
        editor_id=current_user().id,
    )
    token = draft.token
    commit()
    return redirect(url_for("admin.issue_draft", token=token))


# --- a draft: preview, test, confirm, send --------------------------------------------------


def _draft_page(draft: drafts.Draft, *, error: str | None = None, status: int = 200) -> Any:
    plan = _plan(draft)
    _, text = sending.preview_for_reader(
        db_session(), plan, current_user().email, config=current_app.config
    )
    return (
        render_template(
            "admin/issue_draft.html",
            draft=draft,
            plan=plan,
            text=text,
            error=error,
            at=request.values.get("at", "")[:40],
        ),
        status,
    )


@bp.get("/issues/drafts/<token>", endpoint="issue_draft")
def issue_draft(token: str):
    """Show the draft at desktop and phone widths, with the test and send buttons."""
    return _draft_page(_load(token))


@bp.get("/issues/drafts/<token>/html", endpoint="issue_draft_html")
def issue_draft_html(token: str):
    """Serve the draft's HTML as the signed-in editor would get it (for the frames)."""
    plan = _plan(_load(token))
    html, _ = sending.preview_for_reader(
        db_session(), plan, current_user().email, config=current_app.config
    )
    response = current_app.make_response(html)
    response.headers["Content-Security-Policy"] = FRAME_CSP
    return response


@bp.post("/issues/drafts/<token>/test", endpoint="issue_draft_test")
def issue_draft_test(token: str):
    """Send a "[TEST]" copy to the signed-in editor only; nothing is recorded."""
    draft = _load(token)
    plan = _plan(draft)
    address = current_user().email
    try:
        sending.send_test_copies(db_session(), mailer(), plan, [address], config=current_app.config)
    except sending.SendError as exc:
        return _draft_page(draft, error=str(exc), status=400)
    flash(f"A test copy marked [TEST] was sent to {address}.", "ok")
    return redirect(url_for("admin.issue_draft", token=token))


def _confirm_page(
    draft: drafts.Draft,
    plan: sending.SendPlan,
    when: datetime | None,
    *,
    notice: str | None = None,
    status: int = 200,
) -> Any:
    return (
        render_template(
            "admin/issue_confirm.html",
            draft=draft,
            plan=plan,
            when=when,
            at=when.strftime("%Y-%m-%dT%H:%M") if when else "",
            notice=notice,
        ),
        status,
    )


def _checked(draft: drafts.Draft) -> tuple[sending.SendPlan, datetime | None]:
    """Plan the send and read the schedule; NewsletterError says why it cannot go."""
    plan = _plan(draft)
    if request.values.get("mode") == "schedule" and not request.values.get("at", "").strip():
        raise NewsletterError("Pick the date and time (UTC) to schedule the send for.")
    when = _parse_at(request.values.get("at", ""))
    sending.check_can_send(plan, allow_clipping=request.values.get("allow_clipping") == "1")
    return plan, when


@bp.get("/issues/drafts/<token>/confirm", endpoint="issue_draft_confirm")
def issue_draft_confirm(token: str):
    """The confirmation step: the list, how many readers get it, the subject."""
    draft = _load(token)
    try:
        plan, when = _checked(draft)
    except NewsletterError as exc:
        return _draft_page(draft, error=str(exc), status=400)
    return _confirm_page(draft, plan, when)


@bp.post("/issues/drafts/<token>/send", endpoint="issue_draft_send")
def issue_draft_send(token: str):
    """Store the issue and its ledger (or schedule it), then have it delivered."""
    draft = _load(token)
    try:
        plan, when = _checked(draft)
    except NewsletterError as exc:
        return _draft_page(draft, error=str(exc), status=400)
    expected = request.form.get("expected", "")
    if expected != str(plan.audience.recipients):
        return _confirm_page(
            draft,
            plan,
            when,
            notice=(
                f"The audience changed since you looked: the list now has "
                f"{plan.audience.recipients} readers to send to. Check and confirm again."
            ),
            status=409,
        )
    session = db_session()
    runner = background()
    in_process = when is None and runner.needed(session)
    try:
        if in_process:
            # Read the SES quota before storing anything: a send that cannot start
            # stores nothing.
            runner.pace()
        issue = sending.start_send(session, plan, at=when)
    except NewsletterError as exc:
        session.rollback()
        return _draft_page(draft, error=str(exc), status=400)
    issue_id, status = issue.id, issue.status
    commit()
    if status is IssueStatus.SCHEDULED:
        flash(f"Scheduled for {when:%Y-%m-%d %H:%M} UTC to {plan.mailing_list.slug}.", "ok")
    else:
        if in_process:
            runner.kick()
        flash(f"Sending to {plan.audience.recipients} readers of {plan.mailing_list.slug}.", "ok")
    return redirect(url_for("admin.issue_detail", issue_id=issue_id))


# --- a sent (or sending, or scheduled) issue ------------------------------------------------


def _keep_going(issue: Issue) -> bool:
    """Deliver in this process when the issue waits for a worker and none runs."""
    due = issue.status is IssueStatus.SENDING or (
        issue.status is IssueStatus.SCHEDULED
        and issue.scheduled_at is not None
        and issue.scheduled_at <= clock.now()
    )
    runner = background()
    if runner.running():
        # The thread takes every sending issue, this one too.
        return True
    if due and runner.needed(db_session()):
        # Nothing else delivers it (the web process restarted, or a schedule came due).
        commit()
        runner.kick()
        return True
    return runner.running()


@bp.get("/issues/<int:issue_id>", endpoint="issue_detail")
def issue_detail(issue_id: int):
    """Follow one send: counts by state, a progress bar, the rate; updated every second."""
    issue = _issue_or_404(issue_id)
    in_process = _keep_going(issue)
    figures = progress.issue_figures(db_session(), issue.id, lease=_lease())
    page = render_template("admin/issue.html", f=figures, in_process=in_process)
    commit()  # rows of lost workers, marked unknown while counting
    return page


@bp.get("/issues/<int:issue_id>.json", endpoint="issue_progress")
def issue_progress(issue_id: int):
    """The issue page's figures, polled by static/admin-issues.js."""
    started = time.perf_counter()
    issue = _issue_or_404(issue_id)
    _keep_going(issue)
    figures = progress.live_figures(db_session(), issue.id, lease=_lease())
    data = figures.as_dict()
    data["finished_text"] = (
        f"Finished at {issue.finished_at:%Y-%m-%d %H:%M:%S} UTC." if issue.finished_at else None
    )
    commit()
    # A huge ledger takes longer to count: poll less often, so that an open page costs
    # the database at most about a tenth of its time.
    data["next_poll_ms"] = max(1000, round((time.perf_counter() - started) * 10_000))
    return jsonify(data)


# --- editor actions on a send: cancel, retry ------------------------------------------------


@bp.post("/issues/<int:issue_id>/cancel", endpoint="issue_cancel")
def issue_cancel(issue_id: int):
    """Cancel the send: nothing more is claimed; readers not yet sent to get nothing."""
    issue = _issue_or_404(issue_id)
    try:
        _, count = sending.cancel_send(db_session(), issue.id)
    except sending.SendError as exc:
        flash(str(exc), "error")
    else:
        commit()
        flash(f"Cancelled: {count} readers not yet sent to get nothing.", "ok")
    return redirect(url_for("admin.issue_detail", issue_id=issue_id))


@bp.post("/issues/<int:issue_id>/retry", endpoint="issue_retry")
def issue_retry(issue_id: int):
    """Send the failed messages again, or the unknown ones (the editor accepts that some
    readers may get a second copy, and has ticked the box saying so)."""
    issue = _issue_or_404(issue_id)
    which = request.form.get("which")
    if which not in ("failed", "unknown"):
        abort(400)
    if which == "unknown" and request.form.get("accept_second_copy") != "1":
        flash(
            "Tick the box to accept that some readers may get a second copy, or leave the "
            "unknown messages as they are.",
            "error",
        )
        return redirect(url_for("admin.issue_detail", issue_id=issue_id))
    retry = sending.retry_unknown if which == "unknown" else sending.retry_failed
    try:
        _, count = retry(db_session(), issue.id)
    except sending.SendError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.issue_detail", issue_id=issue_id))
    commit()
    _keep_going(issue)
    flash(f"Sending the {count} {which} messages again.", "ok")
    return redirect(url_for("admin.issue_detail", issue_id=issue_id))
