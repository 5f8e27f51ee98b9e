"""The console's import pages: upload a CSV, map its columns, choose the consent, follow it.

The flow is upload → mapping → start. The upload is kept in the database
(newsletter.imports.uploads, found by a random token, never by the client's file name)
while the editor maps the columns, so each step may be served by any web machine;
starting records an ImportJob and runs newsletter.imports.run_job on the stored file in
a daemon thread with its own sessions, which deletes the file when it ends. The job page
shows the job's counters; static/admin-import.js polls its JSON to keep them moving.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta
from typing import Any

from flask import Flask
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.exceptions import RequestEntityTooLarge

from newsletter import clock
from newsletter import imports
from newsletter import lists as lists_core
from newsletter.errors import NotFound
from newsletter.imports import uploads
from newsletter.models import ImportJob
from newsletter.models import ImportMode
from newsletter.models import ImportStatus
from newsletter.web import commit
from newsletter.web import database
from newsletter.web import db_session
from newsletter.web import error_page
from newsletter.web import mailer
from newsletter.web.admin import bp

log = logging.getLogger(__name__)

# Staged uploads nobody started are deleted after this long.
STAGED_MAX_AGE = timedelta(hours=24)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}\Z")
# Bad rows shown on the job page (all are counted; the core keeps the first 1,000).
SHOWN_BAD_ROWS = 200
CONSENT_CHOICES = {
    ImportMode.CONSENTED.value: ImportMode.CONSENTED,
    ImportMode.DOUBLE_OPT_IN.value: ImportMode.DOUBLE_OPT_IN,
}


class UploadError(Exception):
    """The upload or the mapping cannot be used; the message is shown with the form."""


UNKNOWN_UPLOAD = "This upload is unknown or has expired: please upload the file again."


def _open_staged(token: str) -> uploads.UploadStream:
    """Open the staged upload with this token, or raise UploadError."""
    if not _TOKEN.match(token or ""):
        raise UploadError(UNKNOWN_UPLOAD)
    try:
        return uploads.open_stream(db_session(), token)
    except uploads.UploadGone:
        raise UploadError(UNKNOWN_UPLOAD) from None


def _display_name(filename: str | None) -> str:
    """The client's file name, for display only: no folders, no control characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()
    return name[:200] or "upload.csv"


def _mapping_defaults(columns: list[str]) -> tuple[str | None, str | None]:
    email, name = imports.detect_columns(columns)
    return email, name if name != email else None


@bp.before_app_request
def _raise_upload_limit() -> None:
    # Runs before the console's CSRF check reads the body: the upload may be larger than
    # the site-wide MAX_CONTENT_LENGTH, up to IMPORT_MAX_BYTES.
    if request.endpoint == "admin.import_upload":
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Any:
    limit = current_app.config["IMPORT_MAX_BYTES"]
    if request.endpoint == "admin.import_upload":
        message = (
            f"The file is larger than {_size(limit)}, the largest import this site accepts "
            "(NEWSLETTER_IMPORT_MAX_BYTES). Split it into smaller files, or import it with "
            "`newsletter subscribers import` on the server."
        )
    else:
        message = "The request is too large."
    return error_page(413, "File too large", message)


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count} bytes"  # pragma: no cover


def _form_page(error: str | None = None, status: int = 200, list_slug: str = "") -> Any:
    session = db_session()
    jobs = imports.recent_jobs(session)
    commit()  # the stalled jobs it marked failed
    return (
        render_template(
            "admin/import.html",
            lists=lists_core.all_lists(session),
            jobs=jobs,
            selected=list_slug or request.args.get("list", ""),
            error=error,
            max_size=_size(current_app.config["IMPORT_MAX_BYTES"]),
        ),
        status,
    )


@bp.get("/import", endpoint="import_form")
def import_form():
    """Show the upload form and the latest imports."""
    return _form_page()


@bp.post("/import", endpoint="import_upload")
def import_upload():
    """Keep an uploaded CSV file and show its columns for mapping."""
    list_slug = request.form.get("list", "")[:64]
    upload = request.files.get("file")
    try:
        mailing_list = _known_list(list_slug)
        if upload is None or not upload.filename:
            raise UploadError("Choose a CSV file to import.")
        try:
            # Checked before it is stored: a file that cannot be imported is not kept.
            columns = imports.read_columns(upload.stream)
            sample = imports.read_sample(upload.stream)
            email_column, name_column = _mapping_defaults(columns)
            if email_column is None and any("@" in c for c in columns):
                raise UploadError(
                    "The first line of the file holds addresses, not column names: add a "
                    "header line naming the columns (e.g. email,name) and upload it again."
                )
        except (imports.ImportFileError, UploadError) as exc:
            raise UploadError(str(exc)) from None
    except UploadError as exc:
        return _form_page(str(exc), 400, list_slug)
    session = db_session()
    uploads.prune(session, clock.now() - STAGED_MAX_AGE)
    staged = uploads.store(session, upload.stream, _display_name(upload.filename))
    token, size = staged.token, staged.size
    commit()
    return render_template(
        "admin/import_mapping.html",
        token=token,
        filename=_display_name(upload.filename),
        size=_size(size),
        mailing_list=mailing_list,
        columns=columns,
        sample=sample,
        email_column=email_column,
        name_column=name_column,
        consent=None,
        error=None,
    )


def _known_list(slug: str) -> Any:
    if not slug:
        raise UploadError("Choose the list to import into.")
    try:
        return lists_core.get_list(db_session(), slug)
    except NotFound as exc:
        raise UploadError(str(exc)) from None


@bp.post("/import/start", endpoint="import_start")
def import_start():
    """Record the import job from the mapping form and start it in the background."""
    form = request.form
    token = form.get("token", "")[:64]
    filename = _display_name(form.get("filename", "")[:300])
    list_slug = form.get("list", "")[:64]
    email_column = form.get("email_column", "")[:200]
    name_column = form.get("name_column", "")[:200]
    consent = form.get("consent", "")
    try:
        with _open_staged(token) as stream:
            upload_id, size = stream.upload_id, stream.size
            columns = imports.read_columns(stream)
            sample = imports.read_sample(stream)
        mailing_list = _known_list(list_slug)
    except (UploadError, imports.ImportFileError) as exc:
        return _form_page(str(exc), 400, list_slug)
    error = None
    if email_column not in columns:
        error = "Choose the column that holds the email addresses."
    elif name_column and name_column not in columns:
        error = "Choose the column with the names, or none."
    elif name_column == email_column:
        error = "The name column cannot be the address column."
    elif consent not in CONSENT_CHOICES:
        error = (
            "Choose whether these people already agreed to receive the list, or should "
            "each get a confirmation email."
        )
    if error:
        return (
            render_template(
                "admin/import_mapping.html",
                token=token,
                filename=filename,
                size=_size(size),
                mailing_list=mailing_list,
                columns=columns,
                sample=sample,
                email_column=email_column if email_column in columns else None,
                name_column=name_column if name_column in columns else None,
                consent=consent if consent in CONSENT_CHOICES else None,
                error=error,
            ),
            400,
        )
    job = imports.create_job(
        db_session(),
        mailing_list,
        filename,
        CONSENT_CHOICES[consent],
        email_column,
        name_column or None,
        size,
    )
    job_id = job.id
    commit()
    _start(current_app._get_current_object(), job_id, token, upload_id)
    return redirect(url_for("admin.import_job", job_id=job_id), code=303)


def _start(app: Flask, job_id: int, token: str, upload_id: int) -> threading.Thread:
    """Run the job on the stored upload in a daemon thread, then delete the upload."""
    db, mail_backend, config = database(), mailer(), dict(app.config)

    def work() -> None:
        try:
            with uploads.open_stream(db, token) as stream:
                imports.run_job(db, job_id, stream, mailer=mail_backend, config=config)
        except Exception:
            log.exception("import job %s could not run", job_id)
        finally:
            try:
                with db.transaction() as session:
                    uploads.delete(session, upload_id)
            except Exception:
                log.exception("import job %s: its upload was not deleted (db prune will)", job_id)

    thread = threading.Thread(target=work, name=f"import-{job_id}", daemon=True)
    thread.start()
    return thread


def _progress(job: ImportJob) -> dict[str, Any]:
    finished = job.status in (ImportStatus.DONE, ImportStatus.FAILED)
    total = job.bytes_total or 0
    done = job.bytes_total if job.status is ImportStatus.DONE else job.bytes_done or 0
    percent = 100 if job.status is ImportStatus.DONE else (int(done * 100 / total) if total else 0)
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "finished": finished,
        "percent": min(percent, 100),
        "bytes_done": done,
        "bytes_total": total,
        "counts": {
            "rows": job.rows,
            "imported": job.imported,
            "confirmations": job.confirmations,
            "merged": job.merged,
            "refused": job.refused,
            "blank": job.blank,
            "bad": job.bad_count,
        },
        "error": job.error,
        "bad_rows": [],
        "bad_rows_hidden": 0,
    }
    if finished:
        rows = imports.bad_rows(job)
        data["bad_rows"] = [{"line": b.line, "reason": b.reason} for b in rows[:SHOWN_BAD_ROWS]]
        data["bad_rows_hidden"] = job.bad_count - len(data["bad_rows"])
    return data


@bp.get("/import/<int:job_id>", endpoint="import_job")
def import_job(job_id: int):
    """Show an import's progress, and its report once done."""
    job = imports.get_job(db_session(), job_id)
    commit()  # in case it had stalled and was marked failed
    return render_template("admin/import_job.html", job=job, progress=_progress(job))


@bp.get("/import/<int:job_id>.json", endpoint="import_job_json")
def import_job_json(job_id: int):
    """An import's progress as JSON (polled by static/admin-import.js)."""
    job = imports.get_job(db_session(), job_id)
    commit()  # in case it had stalled and was marked failed
    return jsonify(_progress(job))
