"""The drain: send one tenant's queued changes to XPM, in priority order, until the queue or the quota
is empty. Run by ``xpm-pipeline export drain`` and by the Dagster drain job (one run per tenant).

Per item: claim (leased) -> admission + ``sending`` in one transaction -> the HTTP call -> ``done``
with XPM's id. What each answer does:

=====================================  ==================================================================
XPM's answer                            the item
=====================================  ==================================================================
OK                                      done (remote id: the new UUID for creates)
ERROR / 4xx with a reason, not found    dead, with XPM's reason (fix it and ``export retry-dead``)
429, or our quota used up               pending again, not an attempt; the drain stops until quota returns
unclear (timeout, reset, 5xx, cut)      in doubt -> read back at once (``reconcile``) -> done, or pending
                                        again: at once, then after 1 min, doubling to 1 h; dead after
                                        ``MAX_SENDS`` sends XPM never took; ``FAILING_STREAK``
                                        such writes in a row stop the drain (XPM is failing)
credentials refused                     pending again, not an attempt; the drain stops (reconnect)
database down                           left ``sending``: after the lease it is in doubt, then read back
any other error (our bug)               dead with the error in one line; the drain goes on with the next
=====================================  ==================================================================

An item whose request cannot be built (a payload no longer valid, edited in the database or queued by an
older version) is dead before any quota is spent: ``not sent: <why>``. Any other error while sending is
a bug of ours whose outcome we cannot know: the item is dead (never sent again by itself, so never
twice; the reason says to check XPM before ``export retry-dead``), as resending a call that fails the
same way every time would loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from xpm_pipeline.clock import Clock
from xpm_pipeline.export import queue as Q
from xpm_pipeline.export.reconcile import APPLIED, GONE, reconcile
from xpm_pipeline.killpoints import killpoint
from xpm_pipeline.quota.ledger import QuotaExhausted, QuotaLedger
from xpm_pipeline.xpm.client import CallInfo, XPMClient
from xpm_pipeline.xpm.writes import WriteValidationError, build_body, write_path
from xpm_pipeline.xpm.errors import (
    XPMAuthError,
    XPMError,
    XPMParseError,
    XPMRateLimited,
    XPMResponseError,
    XPMServerError,
    XPMUnavailable,
    XPMUnclearOutcome,
)

log = logging.getLogger(__name__)

DEFAULT_LEASE = 600.0  # seconds a claim (and a send) may take before others treat the worker as dead
DEFAULT_MAX_WAIT = 120.0  # seconds the drain waits for quota before it stops and leaves items pending
RESEND_BACKOFF = 60.0  # seconds before a write XPM did not take goes again; doubles with each send ...
RESEND_BACKOFF_CAP = 3600.0  # ... up to an hour
MAX_SENDS = 8  # sends of one item XPM never took before it is dead (kept, with the reason: retry-dead)
FAILING_STREAK = 3  # writes in a row XPM did not take: stop, and leave the queue for the next drain

EMPTY, QUOTA, LIMIT, STOPPED_UNAVAILABLE, STOPPED_AUTH, DEADLINE, STOPPED_WAREHOUSE = (
    "queue empty", "quota used up", "item limit", "XPM unavailable", "credentials refused", "deadline",
    "warehouse unavailable",
)


@dataclass
class DrainReport:
    tenant_id: str
    worker: str
    sent: int = 0  # sends (each spent one admitted write)
    done: int = 0
    dead: int = 0
    in_doubt: int = 0  # unclear answers met (each then read back)
    reconciled: int = 0  # in-doubt items settled by reading XPM back
    requeued: int = 0
    stopped: str = EMPTY
    resume_at: datetime | None = None  # quota stop: when the next call may go
    error: str | None = None
    failing: int = 0  # writes in a row XPM answered unclearly and then had not applied
    events: list[tuple[int, str]] = field(default_factory=list)  # (item_id, event), in order

    @property
    def ok(self) -> bool:
        return self.error is None


def _trimmed_answer(result) -> str:
    parsed = result.parsed
    parts = [f"{k}={v}" for k, v in sorted(parsed.extras.items()) if k not in ("Status",)]
    for name, rows in parsed.rows.items():
        if len(rows):
            parts.append(f"{name}: {rows.records()[0]}")
    return "OK " + "; ".join(parts)


def drain(
    engine: Engine,
    client: XPMClient,
    ledger: QuotaLedger,
    *,
    clock: Clock | None = None,
    lease: float = DEFAULT_LEASE,
    max_wait: float = DEFAULT_MAX_WAIT,
    max_items: int | None = None,
    until: datetime | None = None,
    worker: str | None = None,
    on_item: Callable[[Q.Item, str], None] | None = None,
) -> DrainReport:
    """Send the tenant's queue until it is empty, the quota is used up, ``max_items`` items were
    handled or the clock passes ``until``. Safe to run in several processes at once."""
    clock = clock or ledger.clock
    tenant_id = client.tenant_id
    report = DrainReport(tenant_id=tenant_id, worker=worker or Q.new_worker_id())
    lease_span = timedelta(seconds=lease)
    handled = 0
    while True:
        now = clock.now()
        if until is not None and now >= until:
            report.stopped = DEADLINE
            break
        if max_items is not None and handled >= max_items:
            report.stopped = LIMIT
            break
        item = None
        try:
            Q.recover_expired(engine, tenant_id, now, worker=report.worker)
            item = Q.claim_next(engine, tenant_id, report.worker, now, lease_span)
            if item is None:
                report.stopped = EMPTY
                break
            killpoint("export.after_claim")
            handled += 1
            if item.status == "in_doubt":
                outcome = _settle(engine, client, item, clock, report)
            else:
                outcome = _send(engine, client, ledger, item, clock, lease_span, max_wait, report)
        except DBAPIError as exc:  # the warehouse went away (restart, network): leases cover what was claimed
            reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
            at = f" at item {item.item_id}" if item is not None else ""
            report.stopped = STOPPED_WAREHOUSE
            report.error = (f"lost the warehouse connection{at} ({reason}); every item is kept, and one being sent "
                            "is read back from XPM once its lease ends")
            break
        if on_item is not None:
            on_item(item, outcome)
        if report.stopped != EMPTY or report.error:
            break
    return report


def _send(engine, client: XPMClient, ledger: QuotaLedger, item: Q.Item, clock: Clock, lease: timedelta,
          max_wait: float, report: DrainReport) -> str:
    op = item.spec.write
    try:  # what the client will send, built once before any quota is spent on it
        path = write_path(op, item.entity_key)
        if op.body_element:
            build_body(op, item.payload)
    except Exception as exc:  # noqa: BLE001 - whatever the payload holds, this item cannot go; the rest can
        Q.mark_dead(engine, item, clock.now(), f"not sent: {_one_line(exc)}")
        report.dead += 1
        return _event(report, item, "dead")
    call = CallInfo(tenant_id=item.tenant_id, method=op.method, path=path, direction="write", entity=op.entity)
    sending: list[Q.Item] = []

    def on_admit(conn, admission) -> None:
        sending.append(Q.mark_sending(conn, item, call_id=admission.call_id, now=admission.at, lease=lease))

    try:
        admission = ledger.admit(call, max_wait=max_wait, on_admit=on_admit)
    except QuotaExhausted as exc:
        Q.release(engine, item, clock.now(), str(exc))
        report.stopped, report.resume_at = QUOTA, exc.available_at
        return "waiting"
    except Q.ClaimLost:
        return "taken over"
    item = sending[0]
    killpoint("export.after_sending_commit")
    report.sent += 1
    try:
        with ledger.admitted(admission):
            key = item.entity_key if "{key}" in op.path else None
            result = client.write(op, item.payload if op.body_element else None, key=key)
    except XPMRateLimited as exc:  # a 429 (or our quota, on a retry): not an attempt
        resume = clock.now() + timedelta(seconds=exc.retry_after or 0)
        Q.requeue(engine, item, clock.now(), str(exc), not_an_attempt=True)
        report.requeued += 1
        report.stopped, report.resume_at = QUOTA, getattr(exc, "available_at", resume)
        return _event(report, item, "requeued")
    except XPMAuthError as exc:
        Q.requeue(engine, item, clock.now(), str(exc), not_an_attempt=True)
        report.requeued += 1
        report.stopped, report.error = STOPPED_AUTH, str(exc)
        return _event(report, item, "requeued")
    except (XPMUnclearOutcome, XPMServerError, XPMParseError, XPMUnavailable) as exc:
        # In doubt items are claimed first, so the next turn of the loop reads this one back.
        Q.mark_in_doubt(engine, item, clock.now(), str(exc))
        report.in_doubt += 1
        return _event(report, item, "in_doubt")
    except XPMResponseError as exc:  # XPM understood and refused: sending again will not help
        Q.mark_dead(engine, item, clock.now(), exc.description or str(exc), status_code=exc.status_code)
        report.dead += 1
        return _event(report, item, "dead")
    except WriteValidationError as exc:  # the payload changed since the check above: nothing was sent
        Q.mark_dead(engine, item, clock.now(), f"not sent: {_one_line(exc)}")
        report.dead += 1
        return _event(report, item, "dead")
    except DBAPIError:
        raise  # the warehouse went away: the drain stops, the lease covers this item
    except Exception as exc:  # noqa: BLE001 - a bug of ours: mark this item, go on with the next
        reason = _one_line(exc)
        log.error("export item %s: unexpected error while sending: %s", item.item_id, reason,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        Q.mark_dead(engine, item, clock.now(), f"unexpected error while sending ({reason}); XPM may have it: "
                    "check XPM before export retry-dead")
        report.dead += 1
        return _event(report, item, "dead")
    killpoint("export.after_response")
    remote_id = result.new_id if op.creates else item.entity_key
    killpoint("export.before_done_commit")
    if Q.mark_done(engine, item, clock.now(), remote_id=remote_id, response=_trimmed_answer(result)):
        report.done += 1
        report.failing = 0
        return _event(report, item, "done")
    return "taken over"


def _settle(engine, client: XPMClient, item: Q.Item, clock: Clock, report: DrainReport) -> str:
    """Read XPM back for an in-doubt item and move it on (done / pending / dead)."""
    try:
        verdict = reconcile(engine, client, item)
    except XPMRateLimited as exc:
        Q.release(engine, item, clock.now(), str(exc))
        report.stopped = QUOTA
        report.resume_at = getattr(exc, "available_at", clock.now() + timedelta(seconds=exc.retry_after or 0))
        return "waiting"
    except XPMError as exc:
        Q.release(engine, item, clock.now(), str(exc))
        report.stopped, report.error = STOPPED_UNAVAILABLE, f"reading XPM back for item {item.item_id}: {exc}"
        return "in_doubt"
    killpoint("export.after_reconcile_read")
    report.reconciled += 1
    now = clock.now()
    if verdict.outcome == APPLIED:
        Q.mark_done(engine, item, now, remote_id=verdict.remote_id, response=verdict.detail, status_code=None,
                    event="reconciled")
        report.done += 1
        return _event(report, item, "done")
    if verdict.outcome == GONE:
        Q.mark_dead(engine, item, now, verdict.detail)
        report.dead += 1
        return _event(report, item, "dead")
    # XPM did not take it. Without a pause, an XPM that answers every write with a 503 would get the same
    # write (and its read-back) until the day's quota was gone.
    report.failing += 1
    cause = item.last_error or "no clear answer"
    if item.attempts >= MAX_SENDS:
        Q.mark_dead(engine, item, now, f"XPM did not take it in {item.attempts} sends (last: {cause})")
        report.dead += 1
        event = "dead"
    else:
        # The first resend goes at once (one 5xx is usually a blip), later ones after a growing pause.
        wait = 0.0 if item.attempts <= 1 else min(RESEND_BACKOFF_CAP, RESEND_BACKOFF * 2 ** (item.attempts - 2))
        Q.requeue(engine, item, now, f"read back: not applied ({verdict.detail}); last answer: {cause}; sending "
                  f"again {'now' if not wait else f'after {wait:.0f} s'}",
                  not_before=now + timedelta(seconds=wait) if wait else None)
        report.requeued += 1
        event = "requeued"
    if report.failing >= FAILING_STREAK:
        report.stopped = STOPPED_UNAVAILABLE
        report.error = (f"XPM did not take {report.failing} writes in a row (last: {cause}); they stay queued and "
                        "go again after a backoff")
    return _event(report, item, event)


def _one_line(exc: Exception, limit: int = 300) -> str:
    """An error as the queue shows it: its type when that is all it says, on one bounded line."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, (WriteValidationError, XPMError)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _event(report: DrainReport, item: Q.Item, event: str) -> str:
    report.events.append((item.item_id, event))
    return event


def tenants_ready(engine: Engine, ledger: QuotaLedger, now: datetime) -> dict[str, int]:
    """Tenants a drain run would make progress for now — items it could take, and export quota left
    (a tenant waiting for tomorrow's quota is not started every minute) — with their open item counts."""
    ready: dict[str, int] = {}
    for tenant_id in Q.tenants_with_work(engine, now):
        usage = ledger.usage(tenant_id)
        if usage.write_remaining <= 0 or (usage.blocked_until is not None and usage.blocked_until > usage.at):
            continue
        ready[tenant_id] = Q.depth(engine, tenant_id).open
    return ready
