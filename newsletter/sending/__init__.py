"""Sending an issue: the delivery ledger, workers that claim and send it, crash recovery.

Every recipient of an issue has one `Delivery` row (unique per issue and subscriber), and
that row's status is the truth about their email:

    queued -> sending -> sent | failed (with the reason)
    queued -> suppressed          (checked just before the send)
    sending -> unknown            (the worker died while SES had the message in hand)

A row becomes `sending` in a committed transaction *before* SES is called, so a crash
can never lead to a silent second copy: a row left `sending` by a dead worker becomes
`unknown` and is sent again only when the editor asks (`newsletter send --retry-unknown`).
Workers coordinate only through the database: `SELECT ... FOR UPDATE SKIP LOCKED` hands
each row to one worker, and the shared `send_pace` row (newsletter.pacing) holds the rate.

The parts:

- plan: check and compile an issue, count its audience, store it; resume, retry
- ledger: the rows (create, claim, fence, record) and workers' registration and recovery
- outcomes: the pure rules from what happened to a send to what its row becomes
- slots: when a worker may hand a message to SES (in-flight and pace slots)
- renderer: one reader's message; test copies and previews
- worker: the loop, its threads and its lifecycle (only its main thread touches the
  database)
- rounds: the main thread's database rounds (claim, record outcomes, mark `sending`)
- reports: where a send stands
"""

from datetime import datetime
from datetime import timedelta

from newsletter import clock
from newsletter import tokens
from newsletter.sending.ledger import PENDING
from newsletter.sending.ledger import QUOTA_RECHECK
from newsletter.sending.ledger import Job
from newsletter.sending.ledger import create_ledger
from newsletter.sending.ledger import finish_issues
from newsletter.sending.ledger import live_worker
from newsletter.sending.ledger import new_worker_id
from newsletter.sending.ledger import promote_due_issues
from newsletter.sending.ledger import recover_lost_workers
from newsletter.sending.outcomes import MAX_ATTEMPTS
from newsletter.sending.outcomes import Outcome
from newsletter.sending.plan import Audience
from newsletter.sending.plan import SendError
from newsletter.sending.plan import SendPlan
from newsletter.sending.plan import WorkerBusy
from newsletter.sending.plan import cancel_send
from newsletter.sending.plan import check_can_send
from newsletter.sending.plan import count_audience
from newsletter.sending.plan import find_issue
from newsletter.sending.plan import plan_send
from newsletter.sending.plan import plan_send_text
from newsletter.sending.plan import resume_issue
from newsletter.sending.plan import retry_failed
from newsletter.sending.plan import retry_unknown
from newsletter.sending.plan import start_send
from newsletter.sending.renderer import TEST_PREFIX
from newsletter.sending.renderer import IssueRenderer
from newsletter.sending.renderer import preview_for_reader
from newsletter.sending.renderer import send_test_copies
from newsletter.sending.renderer import web_url
from newsletter.sending.reports import IssueReport
from newsletter.sending.reports import issue_report
from newsletter.sending.reports import recent_reports
from newsletter.sending.worker import DeliveryWorker
from newsletter.sending.worker import Progress
from newsletter.sending.worker import WorkerSettings
from newsletter.sending.worker import worker_mailer

__all__ = [
    "MAX_ATTEMPTS",
    "PENDING",
    "QUOTA_RECHECK",
    "TEST_PREFIX",
    "Audience",
    "DeliveryWorker",
    "IssueRenderer",
    "IssueReport",
    "Job",
    "Outcome",
    "Progress",
    "SendError",
    "SendPlan",
    "WorkerBusy",
    "WorkerSettings",
    "cancel_send",
    "check_can_send",
    "clock",
    "count_audience",
    "create_ledger",
    "datetime",
    "find_issue",
    "finish_issues",
    "issue_report",
    "live_worker",
    "new_worker_id",
    "plan_send",
    "plan_send_text",
    "preview_for_reader",
    "promote_due_issues",
    "recent_reports",
    "recover_lost_workers",
    "resume_issue",
    "retry_failed",
    "retry_unknown",
    "send_test_copies",
    "start_send",
    "timedelta",
    "tokens",
    "web_url",
    "worker_mailer",
]
