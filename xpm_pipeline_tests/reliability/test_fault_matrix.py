"""The fault matrix (issue 8): every flow against every way XPM, Xero identity or the network fails.

Flows: the initial sync, the hourly and the nightly sync, and the export drain. Faults, injected in the
middle of the flow through the sandbox: a 429 on the minute limit (absorbed: the ledger waits out its
``Retry-After``), a 429 on the day limit, 503s, ``500`` with XPM's ``<Status>ERROR`` (an answer, not a
blip: final), timeouts, connection resets, ``200`` with ``<Status>ERROR``, and a 401 whose refresh token
Xero has revoked (``invalid_grant``); and, as the client is built to absorb them, a single 503, timeout
or reset (a read is retried; a write is read back, then sent again only if XPM does not have it). On
PostgreSQL the warehouse connection is also killed mid-run (``pg_terminate_backend``, what a database
restart does to a client).

For each: the flow ends with a clear one-line failure where it must fail, recorded in ``xpm_sync_runs``
or on the queue item; the tables keep what they held (no half-applied step; finished time windows are
checkpoints); and once the fault is gone the next run completes from its checkpoint — the warehouse
equals XPM, every queued change is in XPM exactly once, and no finished window is fetched again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

import httpx
import pytest
from sqlalchemy import select

from xpm_pipeline.demo import PersonEdits
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.export import enqueue
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.queue import reset_dead
from xpm_pipeline.export.worker import (
    FAILING_STREAK,
    QUOTA,
    STOPPED_AUTH,
    STOPPED_UNAVAILABLE,
    STOPPED_WAREHOUSE,
    drain,
)
from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, SyncContext
from xpm_pipeline.sync.run import run_sync, steps_for
from xpm_pipeline.sync.timesheets import initial_windows
from xpm_pipeline.warehouse.control import GRANT_NEEDS_REAUTH
from xpm_pipeline.warehouse.schema import sync_checkpoints, sync_runs, table_for
from xpm_pipeline.xpm.client import RetryPolicy, XPMClient
from xpm_pipeline.xpm.connect import connect
from xpm_pipeline_tests.export.support import client_updates, timesheet_creates
from xpm_pipeline_tests.sync.test_scenarios import assert_warehouse_equals_xpm

WINDOWS = 49  # the initial sync's monthly time windows: 36 months back, this one, 12 ahead
DONE_BEFORE_FAULT = 10


@dataclass(frozen=True)
class Fault:
    spec: dict
    says: str = ""  # what the one-line failure must contain
    absorbed: bool = False  # the flow rides it out and completes
    wait: float = 0  # simulated seconds to let pass before resuming (a day-limit block)
    identity: bool = False  # the fault is Xero identity's, not XPM's
    export: str = ""  # how the drain ends: absorbed | the DrainReport.stopped it stops with | dead
    export_spec: dict | None = None  # the fault as it hits a write, when that differs


FAULTS = {
    "429 minute": Fault({"kind": "rate_limit", "problem": "minute", "retry_after": 30}, absorbed=True,
                        export="absorbed"),
    "429 day": Fault({"kind": "rate_limit", "problem": "day", "retry_after": 50_000}, says="50000", wait=50_001,
                     export=QUOTA),
    "5xx": Fault({"kind": "status", "status": 503, "count": 10_000}, says="503", wait=3600,
                 export=STOPPED_UNAVAILABLE),
    # A write whose answer never came in time, though XPM applied it: reading it back settles it, and it
    # is not sent twice.
    "timeout": Fault({"kind": "latency", "seconds": 0.6, "count": 10_000}, says="ReadTimeout", export="absorbed",
                     export_spec={"kind": "drop_after_commit", "mode": "hang", "seconds": 0.6, "count": 10_000}),
    "reset": Fault({"kind": "reset", "count": 10_000}, says="ReadError", wait=3600, export=STOPPED_UNAVAILABLE),
    "200 ERROR": Fault({"kind": "error_200", "message": "Job is locked for invoicing", "count": 10_000},
                       says="Job is locked for invoicing", export="dead"),
    "revoked refresh": Fault({"kind": "invalid_grant", "count": 10_000}, says="xpm-pipeline connect", identity=True,
                             export=STOPPED_AUTH),
    # XPM's own error envelope on a 500 is an answer (validation, unknown id), not a blip: no retry, and a
    # write it refuses is dead with XPM's words, as for 200 + ERROR.
    "500 ERROR": Fault({"kind": "status", "status": 500, "message": "An error has occurred", "count": 10_000},
                       says="An error has occurred", export="dead"),
}
TRANSIENT = {  # one blip: a read is retried by the client; a write is read back, then sent again if missing
    "503 once": Fault({"kind": "status", "status": 503}, absorbed=True, export="absorbed"),
    "timeout once": Fault({"kind": "latency", "seconds": 0.6}, absorbed=True, export="absorbed",
                          export_spec={"kind": "drop_after_commit", "mode": "hang", "seconds": 0.6}),
    "reset once": Fault({"kind": "reset"}, absorbed=True, export="absorbed"),
}
MATRIX = {**FAULTS, **TRANSIENT}
SLOW_FOR_SYNCS = {"500 ERROR", *TRANSIENT}  # the syncs' extra cases run in the slow suite (cost)


def fault_names(slow=frozenset()) -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in slow else name for name in sorted(MATRIX)]


def add_fault(sandbox, **spec) -> None:
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/faults", json=spec, timeout=10)
    assert answer.status_code == 201, answer.text


def clear_faults(sandbox) -> None:
    httpx.delete(f"{sandbox.base_url}/_sandbox/faults", timeout=10)


def inject(sandbox, fault: Fault, path: str, after: int = 0, *, write: bool = False) -> None:
    if fault.identity:  # the access token is rejected; its refresh token has been revoked at Xero
        add_fault(sandbox, kind="expired_token", path=path, after=after, count=1)
        add_fault(sandbox, path="connect/token", **fault.spec)
    else:
        spec = fault.export_spec if write and fault.export_spec else fault.spec
        add_fault(sandbox, path=path, after=after, **{"count": 1, **spec})


def recover(runtime, sandbox, clock, fault: Fault) -> None:
    clear_faults(sandbox)
    clock.advance(fault.wait + 60)
    if fault.identity:
        connect(runtime.tokens, auto_consent=True)  # what the error told the user to do


def quick_client(runtime, tenant, clock) -> XPMClient:
    """The runtime's client with a short read timeout, so a "timeout" costs real seconds, not minutes."""
    return XPMClient(base_url=runtime.settings.api_base_url, tenant_id=tenant, tokens=runtime.tokens, clock=clock,
                     observers=[runtime.ledger], timeout=httpx.Timeout(connect=5.0, read=0.3, write=5.0, pool=5.0),
                     retry=RetryPolicy(max_attempts=3))


def snapshot(engine, tenant) -> dict[str, list]:
    tables = {}
    with engine.connect() as conn:
        for name in ENTITIES:
            table = table_for(name)
            rows = conn.execute(select(table).where(table.c.tenant_id == tenant)).all()
            tables[name] = sorted(tuple(str(v) for v in row) for row in rows)
    return tables


def calls(sandbox, path_end: str, since: int = 0) -> int:
    """Calls that arrived after the ``since``-th log entry (a timed-out call may still finish later)."""
    return sum(1 for e in list(sandbox.request_log)[since:] if e["path"].endswith(path_end))


def sync(runtime, tenant, clock, mode, entities=None):
    with quick_client(runtime, tenant, clock) as client:
        return run_sync(SyncContext(runtime.engine, client, tenant, mode, clock=clock), entities)


def assert_one_clear_line(message: str | None, fault: Fault) -> None:
    assert message and len(message.splitlines()) == 1, message
    assert "Traceback" not in message and "sbx_" not in message
    assert fault.says in message, (fault.says, message)


def assert_equals_xpm(runtime, tenant, clock) -> None:
    with quick_client(runtime, tenant, clock) as client:
        assert_warehouse_equals_xpm(runtime.engine, client, tenant, clock)


def assert_failed_rows(engine, tenant, outcome, fault: Fault) -> None:
    """Every table of the failed step has a ``failed`` row in xpm_sync_runs with the one-line reason."""
    with engine.connect() as conn:
        rows = conn.execute(select(sync_runs).where(sync_runs.c.run_id.in_(list(outcome.run_ids.values())))).all()
    assert len(rows) == len(outcome.run_ids) and {row.status for row in rows} == {"failed"}, rows
    for row in rows:
        assert_one_clear_line(row.error, fault)
        assert row.ended_at is not None


def assert_gave_up_on_the_consent(runtime, sandbox, tenant, since: int) -> None:
    """A revoked refresh token is tried once, the grant marked ``needs_reauth``: nothing loops."""
    assert calls(sandbox, "connect/token", since=since) == 1
    assert runtime.tokens.grant_status(tenant).status == GRANT_NEEDS_REAUTH


def timesheet_uuids(engine, tenant) -> set[str]:
    table = table_for("timesheet")
    with engine.connect() as conn:
        return set(conn.execute(select(table.c.uuid).where(table.c.tenant_id == tenant)).scalars())


# --- the syncs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", fault_names(slow=SLOW_FOR_SYNCS))
def test_initial_sync(runtime, sandbox, tenant, clock, name):
    fault = MATRIX[name]
    windows = initial_windows(SyncContext(None, None, tenant, INITIAL, clock=clock))
    assert len(windows) == WINDOWS
    inject(sandbox, fault, "time.api/list", after=DONE_BEFORE_FAULT)
    start = len(sandbox.request_log)
    first = sync(runtime, tenant, clock, INITIAL)
    if fault.absorbed:
        assert first.ok, [(o.entity, o.error) for o in first.outcomes]
        # every month read once, plus the one call the fault spoiled, sent again
        assert calls(sandbox, "time.api/list", since=start) == WINDOWS + 1
    else:
        failed = [o for o in first.outcomes if not o.ok]
        assert [o.entity for o in failed] == ["timesheet"], [(o.entity, o.error) for o in first.outcomes]
        assert_one_clear_line(failed[0].error, fault)
        assert_failed_rows(runtime.engine, tenant, failed[0], fault)
        if fault.identity:
            assert_gave_up_on_the_consent(runtime, sandbox, tenant, since=start)
        with runtime.engine.connect() as conn:
            kept = set(conn.execute(
                select(sync_checkpoints.c.scope).where(sync_checkpoints.c.run_id == failed[0].run_id)).scalars())
        # the windows finished before the fault stay done, and the table holds exactly their entries
        assert kept == {f"timesheet {w}" for w in windows[:DONE_BEFORE_FAULT]}
        done = windows[:DONE_BEFORE_FAULT]
        assert timesheet_uuids(runtime.engine, tenant) == {
            t.uuid for t in sandbox.tenant(tenant).times.values() if any(w.start <= t.date <= w.end for w in done)}
        recover(runtime, sandbox, clock, fault)
        seen = len(sandbox.request_log)
        second = sync(runtime, tenant, clock, INITIAL, ["timesheet"])
        assert second.ok, [(o.entity, o.error) for o in second.outcomes]
        assert calls(sandbox, "time.api/list", since=seen) == WINDOWS - DONE_BEFORE_FAULT  # none fetched twice
    assert_equals_xpm(runtime, tenant, clock)


@pytest.mark.parametrize("mode, path, after", [
    (NIGHTLY, "client.api/list", 0),  # the third step (after staff and the task list), with its contacts
    # the second of the three windows of the nightly's 15-month time re-read
    pytest.param(NIGHTLY, "time.api/list", 1, marks=pytest.mark.slow),
    pytest.param(HOURLY, "time.api/list", 0, marks=pytest.mark.slow),  # the nightly's client path, shorter
])
@pytest.mark.parametrize("name", fault_names(slow=SLOW_FOR_SYNCS))
def test_hourly_and_nightly_syncs(runtime, sandbox, tenant, clock, name, mode, path, after):
    fault = MATRIX[name]
    assert sync(runtime, tenant, clock, INITIAL).ok
    PersonEdits(sandbox.base_url, tenant, runtime.engine).make_all(clock.now().date())
    before = snapshot(runtime.engine, tenant)
    clock.advance(3600)
    if fault.identity:  # refresh now, so the run starts with a good access token and meets the 401 mid-run
        runtime.tokens.access_token(tenant)
    inject(sandbox, fault, path, after=after)
    start = len(sandbox.request_log)
    first = sync(runtime, tenant, clock, mode)
    if fault.absorbed:
        assert first.ok, [(o.entity, o.error) for o in first.outcomes]
    else:
        steps = [o.entity for o in first.outcomes]
        hit = steps.index({"client.api/list": "client", "time.api/list": "timesheet"}[path])
        failed = [o for o in first.outcomes if not o.ok]
        assert all(o.ok for o in first.outcomes[:hit]) and failed[0] is first.outcomes[hit], \
            [(o.entity, o.error) for o in first.outcomes]
        if fault.spec["kind"] == "rate_limit":  # the day's quota is gone: later steps fail at once, sending nothing
            assert steps == [step.entity for step in steps_for(mode)] and failed == first.outcomes[hit:]
            assert all(o.api_calls == 0 for o in failed[1:]), [(o.entity, o.api_calls) for o in failed]
        else:
            assert failed == [first.outcomes[hit]], [(o.entity, o.error) for o in first.outcomes]
        for outcome in failed:
            assert_one_clear_line(outcome.error, fault)
            assert_failed_rows(runtime.engine, tenant, outcome, fault)
            for table in outcome.run_ids:  # a failed step applied nothing to any of its tables
                assert snapshot(runtime.engine, tenant)[table] == before[table], table
        if fault.identity:  # and the steps after it were not tried with a consent known to be dead
            assert_gave_up_on_the_consent(runtime, sandbox, tenant, since=start)
            assert first.outcomes[-1] is failed[0]
        recover(runtime, sandbox, clock, fault)
        second = sync(runtime, tenant, clock, mode)
        assert second.ok, [(o.entity, o.error) for o in second.outcomes]
    assert sync(runtime, tenant, clock, NIGHTLY).ok  # whatever an hourly leaves, the nightly catches up
    assert_equals_xpm(runtime, tenant, clock)


# --- the export drain ------------------------------------------------------------------------------------


def queue_changes(runtime, sandbox, tenant, clock) -> list[dict]:
    changes = client_updates(sandbox, tenant, 4, phone="+64 9 555 0199")
    changes += timesheet_creates(sandbox, tenant, 4, date(2026, 11, 23), prefix="matrix")
    enqueue(runtime.engine, tenant, changes, clock=clock)
    return changes


def statuses(engine, tenant) -> Counter:
    with engine.connect() as conn:
        return Counter(conn.execute(select(T.queue.c.status).where(T.queue.c.tenant_id == tenant)).scalars())


def assert_each_change_in_xpm_once(sandbox, tenant) -> None:
    notes = Counter(t.note for t in sandbox.tenant(tenant).times.values() if t.note.startswith("matrix entry"))
    assert notes == {f"matrix entry {n}": 1 for n in range(4)}, notes
    phones = [c for c in sandbox.tenant(tenant).clients.values() if c.phone == "+64 9 555 0199"]
    assert len(phones) == 4


def item_events(engine, item_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(
            select(T.log.c.event).where(T.log.c.item_id == item_id).order_by(T.log.c.log_id)).scalars())


@pytest.mark.parametrize("name", fault_names(slow={"timeout once"}))  # a drain meets it as "timeout": slow suite
def test_export_drain(runtime, sandbox, tenant, clock, name):
    fault = MATRIX[name]
    queue_changes(runtime, sandbox, tenant, clock)
    inject(sandbox, fault, "time.api/add", after=1, write=True)  # time entries go first (priority 1)
    start = len(sandbox.request_log)
    with quick_client(runtime, tenant, clock) as client:
        first = drain(runtime.engine, client, runtime.ledger, max_wait=120)
    now = statuses(runtime.engine, tenant)
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(T.queue).where(T.queue.c.tenant_id == tenant)).all()
    second_entry = next(row for row in rows if row.entity_key == "matrix-1")  # the write the fault hit
    unclear = fault.spec["kind"] != "rate_limit"  # a 429 is a clear "not now"; anything else after sending is not
    if fault.export == "absorbed":
        assert first.ok and now == {"done": 8}, (first, now)
        if unclear:  # in doubt, read back, then done (XPM had it) or sent once more (it had not)
            assert (first.in_doubt, first.reconciled) == (first.reconciled, first.in_doubt) and first.in_doubt >= 1
            events = item_events(runtime.engine, second_entry.item_id)
            assert events[:3] == ["enqueued", "sending", "in_doubt"] and events[-1] in ("done", "reconciled"), events
        else:  # the 429 was waited out, not counted as an attempt
            assert first.in_doubt == 0 and second_entry.attempts == 1, (first, second_entry.attempts)
        assert_each_change_in_xpm_once(sandbox, tenant)
        return
    assert sum(now.values()) == 8 and now["done"] >= 1, now  # nothing lost: every item is still there
    hit = [row for row in rows if row.status != "done"]
    assert second_entry in hit
    if fault.export == "dead":
        assert now["dead"] == 3, now  # each entry XPM refused is dead, with XPM's reason, never resent by itself
        assert all(fault.says in row.last_error for row in hit if row.status == "dead")
        assert first.in_doubt == 0  # a refusal is an answer: nothing to read back
        assert reset_dead(runtime.engine, tenant, clock=clock) == 3  # after fixing the cause in XPM
    else:
        assert first.stopped == fault.export and not now["dead"], (first, now)
        assert_one_clear_line(first.error or next(row.last_error for row in hit if row.last_error), fault)
        assert max(row.attempts for row in rows) <= 2, [r.attempts for r in rows]  # no write sent over and over
        # every item not done is waiting its turn: none left sending or in doubt
        assert {row.status for row in hit} == {"pending"}, [(r.entity_key, r.status) for r in hit]
        if fault.export == STOPPED_UNAVAILABLE:  # each write without an answer was read back before going again
            assert first.sent <= 1 + 2 * FAILING_STREAK
            assert first.in_doubt == first.reconciled >= 1, first
            assert "in_doubt" in item_events(runtime.engine, second_entry.item_id)
        else:  # 429 day, revoked consent: not attempts, nothing was in doubt
            assert first.in_doubt == 0 and all(row.attempts == 0 for row in hit), \
                [(r.entity_key, r.attempts) for r in hit]
        if fault.export == QUOTA:
            assert first.resume_at is not None and (first.resume_at - clock.now()).total_seconds() >= 49_000
        if fault.identity:
            assert_gave_up_on_the_consent(runtime, sandbox, tenant, since=start)
    recover(runtime, sandbox, clock, fault)
    with quick_client(runtime, tenant, clock) as client:
        second = drain(runtime.engine, client, runtime.ledger, max_wait=120)
    assert second.ok and statuses(runtime.engine, tenant) == {"done": 8}, (second, statuses(runtime.engine, tenant))
    assert_each_change_in_xpm_once(sandbox, tenant)


# --- the warehouse connection dies mid-run (PostgreSQL) ---------------------------------------------------


@pytest.fixture
def kill_connection_once(runtime):
    """Arm: the next statement matching ``marker`` runs on a connection another session has just
    terminated, as a PostgreSQL restart would leave it."""
    from sqlalchemy import event

    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("kills a PostgreSQL backend")
    armed: dict = {}

    def before(conn, cursor, statement, parameters, context, executemany):
        marker = armed.get("marker")
        if isinstance(marker, str):
            marker = (marker,)
        if marker and not all(part in statement for part in marker):
            return
        if marker and armed.get("skip", 0) <= 0:
            armed.clear()
            pid = conn.connection.dbapi_connection.info.backend_pid
            with runtime.engine.pool._creator() as killer:  # a connection of its own, outside the pool
                killer.autocommit = True
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        elif marker:
            armed["skip"] -= 1

    event.listen(runtime.engine, "before_cursor_execute", before)
    yield armed
    event.remove(runtime.engine, "before_cursor_execute", before)


def test_initial_sync_survives_its_database_connection_dying_mid_load(runtime, sandbox, tenant, clock,
                                                                     kill_connection_once):
    kill_connection_once.update(marker="xpm_sync_checkpoints", skip=DONE_BEFORE_FAULT)
    first = sync(runtime, tenant, clock, INITIAL)
    failed = [o for o in first.outcomes if not o.ok]
    assert [o.entity for o in failed] == ["timesheet"] and failed[0].error
    assert_one_clear_line(failed[0].error, Fault({}, says="connection"))
    assert_failed_rows(runtime.engine, tenant, failed[0], Fault({}, says="connection"))
    clock.advance(16 * 60)  # (the failed row was written on a fresh connection; the lease wait is belt and braces)
    with runtime.engine.connect() as conn:
        done = len(conn.execute(select(sync_checkpoints.c.scope)).all())
    assert done >= DONE_BEFORE_FAULT - 1  # the windows committed before the connection died
    seen = len(sandbox.request_log)
    second = sync(runtime, tenant, clock, INITIAL, ["timesheet"])
    assert second.ok, [(o.entity, o.error) for o in second.outcomes]
    # the windows not checkpointed; the one whose checkpoint commit died may be read once more
    assert WINDOWS - done <= calls(sandbox, "time.api/list", since=seen) <= WINDOWS - done + 1
    assert_equals_xpm(runtime, tenant, clock)


@pytest.mark.parametrize("marker, skip, left_sending", [
    ("UPDATE xpm_export_queue", 6, 0),  # a claim: the item was never sent
    # the third ``done`` commit, after XPM applied a time entry: the item is left ``sending``
    (("UPDATE xpm_export_queue", "remote_id="), 2, 1),
], ids=["at a claim", "at a done commit"])
def test_export_drain_survives_its_database_connection_dying_mid_send(runtime, sandbox, tenant, clock,
                                                                     kill_connection_once, marker, skip, left_sending):
    queue_changes(runtime, sandbox, tenant, clock)
    kill_connection_once.update(marker=marker, skip=skip)
    with quick_client(runtime, tenant, clock) as client:
        first = drain(runtime.engine, client, runtime.ledger, max_wait=120)
    assert not kill_connection_once, "the drain never reached the statement the connection was to die on"
    assert first.stopped == STOPPED_WAREHOUSE, first
    assert_one_clear_line(first.error, Fault({}, says="lost the warehouse connection"))
    left = statuses(runtime.engine, tenant)
    assert sum(left.values()) == 8 and left["sending"] == left_sending, left  # nothing lost
    clock.advance(16 * 60)  # past the lease of whatever the dead connection held
    with quick_client(runtime, tenant, clock) as client:
        second = drain(runtime.engine, client, runtime.ledger, max_wait=120)
    assert second.ok and statuses(runtime.engine, tenant) == {"done": 8}, (second, statuses(runtime.engine, tenant))
    # an item left sending is in doubt once its lease ends, and XPM read back: it had it, so it is not resent
    assert second.reconciled == left_sending and second.sent == 8 - first.sent, (first, second)
    assert_each_change_in_xpm_once(sandbox, tenant)


@pytest.mark.parametrize("mode, marker", [
    # the hourly's insert of new time entries; the nightly's change log, written in the same transaction
    # as the entries it applies (everything of the step is in flight when the connection dies)
    pytest.param(HOURLY, "INSERT INTO xpm_timesheets ", marks=pytest.mark.slow),
    (NIGHTLY, "INSERT INTO xpm_timesheet_changes "),
])
def test_hourly_and_nightly_survive_their_database_connection_dying_mid_load(runtime, sandbox, tenant, clock,
                                                                            kill_connection_once, mode, marker):
    assert sync(runtime, tenant, clock, INITIAL).ok
    PersonEdits(sandbox.base_url, tenant, runtime.engine).make_all(clock.now().date())
    before = snapshot(runtime.engine, tenant)
    clock.advance(3600)
    kill_connection_once.update(marker=marker, skip=0)
    first = sync(runtime, tenant, clock, mode)
    assert not kill_connection_once, "the run never reached the statement the connection was to die on"
    failed = [o for o in first.outcomes if not o.ok]
    assert [o.entity for o in failed] == ["timesheet"], [(o.entity, o.error) for o in first.outcomes]
    # the driver's words vary with the moment it notices ("terminating connection due to administrator
    # command", "server closed the connection unexpectedly"); always one line naming the lost connection
    says = Fault({}, says="connection")
    assert_one_clear_line(failed[0].error, says)
    assert_failed_rows(runtime.engine, tenant, failed[0], says)
    assert snapshot(runtime.engine, tenant)["timesheet"] == before["timesheet"]  # the whole step rolled back
    clock.advance(3600)
    second = sync(runtime, tenant, clock, mode)
    assert second.ok, [(o.entity, o.error) for o in second.outcomes]
    assert sync(runtime, tenant, clock, NIGHTLY).ok
    assert_equals_xpm(runtime, tenant, clock)
