"""No single XPM answer can wipe data: the removal guard, accepting a held removal, and time entries that
wait for confirmation instead of being deleted unconfirmed. Against the sandbox, on both dialects."""

from __future__ import annotations

from datetime import timedelta, timezone

import httpx
import pytest
from sqlalchemy import func, select

from xpm_pipeline.sync.context import INITIAL, NIGHTLY, SyncContext, SyncOptions
from xpm_pipeline.sync.guard import RemovalLimits, table_name
from xpm_pipeline.sync.removals import held_removals, open_holds, unconfirmed_removals
from xpm_pipeline.sync.run import run_sync
from xpm_pipeline.warehouse.schema import sync_runs, table_for
from xpm_pipeline.xpm.client import XPMClient
from xpm_pipeline.xpm.errors import XPMIncompleteAnswer
from xpm_pipeline_tests.support import SandboxTokens

TIGHT = SyncOptions(removal_limits=RemovalLimits(share=0.2, min_rows=2))  # the small practice's tables are small


REFERENCE = ["staff", "task", "client", "client_group", "job"]  # the initial sync without its 48 months of time


@pytest.fixture
def synced(engine, client, tenant, clock):
    assert run_sync(SyncContext(engine, client, tenant, INITIAL, clock=clock), REFERENCE).ok
    clock.advance(3600)


@pytest.fixture
def synced_time(engine, client, tenant, clock, synced):
    months = SyncOptions(initial_back_months=16)  # what the nightly window needs, in fewer calls
    assert run_sync(SyncContext(engine, client, tenant, INITIAL, clock=clock, options=months), ["timesheet"]).ok
    clock.advance(3600)


def nightly(engine, client, tenant, clock, entities=None, **kwargs):
    kwargs.setdefault("options", TIGHT)
    report = run_sync(SyncContext(engine, client, tenant, NIGHTLY, clock=clock, **kwargs), entities)
    clock.advance(3600)
    return {outcome.entity: outcome for outcome in report.outcomes}


def table_rows(engine, entity: str, tenant: str) -> list[tuple]:
    """Every stored row of the tenant, soft-deleted ones included, byte for byte as stored."""
    table = table_for(entity)
    with engine.connect() as conn:
        return sorted(tuple(map(repr, row)) for row in conn.execute(select(table).where(table.c.tenant_id == tenant)))


def live_count(engine, entity: str, tenant: str) -> int:
    table = table_for(entity)
    with engine.connect() as conn:
        return len(conn.execute(select(table.c.tenant_id).where(table.c.tenant_id == tenant,
                                                                 table.c._deleted_at.is_(None))).all())


def test_removing_most_staff_is_held_the_table_stays_and_other_steps_go_on(engine, sandbox, client, tenant, clock,
                                                                        synced):
    practice = sandbox.state.tenant(tenant)
    for uuid in list(practice.staff)[:4]:  # 4 of 6 staff gone from XPM's list: more than 20 % and 2 rows
        del practice.staff[uuid]
    before = table_rows(engine, "staff", tenant)

    outcomes = nightly(engine, client, tenant, clock)

    staff = outcomes["staff"]
    assert not staff.ok
    assert staff.error.startswith("held: the nightly sync would remove 4 of 6 live rows of xpm_staff (67%")
    assert "--accept-removals xpm_staff" in staff.error and "\n" not in staff.error
    assert table_rows(engine, "staff", tenant) == before
    assert all(outcome.ok for name, outcome in outcomes.items() if name not in ("staff", "timesheet"))
    with engine.connect() as conn:
        error = conn.execute(select(sync_runs.c.error).where(sync_runs.c.run_id == staff.run_id)).scalar()
    assert error == staff.error
    (held,) = open_holds(engine, tenant)
    assert (held.table_name, held.removing, held.live_rows, held.mode) == ("xpm_staff", 4, 6, NIGHTLY)


def test_a_person_accepts_a_held_removal_and_who_and_when_are_recorded(engine, sandbox, client, tenant, clock, synced):
    practice = sandbox.state.tenant(tenant)
    for uuid in list(practice.staff)[:4]:
        del practice.staff[uuid]
    assert not nightly(engine, client, tenant, clock, ["staff"])["staff"].ok
    accepted_at = clock.now()

    outcome = nightly(engine, client, tenant, clock, ["staff"], accept_removals=frozenset({"xpm_staff"}),
                      accepted_by="alice")

    assert outcome["staff"].ok and outcome["staff"].table("staff").deleted == 4
    assert live_count(engine, "staff", tenant) == 2
    assert open_holds(engine, tenant) == []
    with engine.connect() as conn:
        (row,) = conn.execute(select(held_removals).where(held_removals.c.tenant_id == tenant)).all()
    assert (row.status, row.decided_by, row.removing, row.live_rows) == ("accepted", "alice", 4, 6)
    assert row.decided_at.replace(tzinfo=timezone.utc) == accepted_at
    # The acceptance was for that run only: the next removal past the bound is held again.
    practice.staff.clear()
    assert nightly(engine, client, tenant, clock, ["staff"])["staff"].error.startswith("held:")


def test_a_hold_clears_when_xpm_answers_sanely_again(engine, sandbox, client, tenant, clock, synced):
    practice = sandbox.state.tenant(tenant)
    removed = {uuid: practice.staff.pop(uuid) for uuid in list(practice.staff)[:4]}
    assert not nightly(engine, client, tenant, clock, ["staff"])["staff"].ok
    practice.staff.update(removed)  # it was XPM's answer that was wrong

    assert nightly(engine, client, tenant, clock, ["staff"])["staff"].ok
    assert open_holds(engine, tenant) == []
    assert live_count(engine, "staff", tenant) == 6
    with engine.connect() as conn:
        assert conn.execute(select(held_removals.c.status)).scalars().all() == ["cleared"]


def test_removals_within_the_bound_go_through(engine, sandbox, client, tenant, clock, synced):
    practice = sandbox.state.tenant(tenant)
    del practice.task_types[next(iter(practice.task_types))]  # 1 of 15 tasks of the task list

    outcome = nightly(engine, client, tenant, clock, ["task"])["task"]

    assert outcome.ok and outcome.table("task").deleted == 1
    assert open_holds(engine, tenant) == []


def test_every_row_of_a_table_is_held_under_the_default_limits(engine, sandbox, client, tenant, clock, synced):
    practice = sandbox.state.tenant(tenant)
    practice.groups.clear()  # 4 groups: few rows, but all of them
    before = table_rows(engine, "client_group", tenant), table_rows(engine, "client_group_member", tenant)

    outcome = nightly(engine, client, tenant, clock, ["client_group"], options=SyncOptions())["client_group"]

    assert outcome.error.startswith("held: the nightly sync would remove 4 of 4 live rows of xpm_client_groups")
    assert (table_rows(engine, "client_group", tenant), table_rows(engine, "client_group_member", tenant)) == before


def test_jobs_gone_from_xpm_past_the_bound_are_neither_deleted_nor_completed(engine, sandbox, client, tenant, clock,
                                                                           synced):
    jobs, tasks = table_rows(engine, "job", tenant), table_rows(engine, "job_task", tenant)
    practice = sandbox.state.tenant(tenant)
    current = [job for job in practice.jobs.values() if not practice.job_is_complete(job)]
    for job in current[:20]:  # 20 of 25 active jobs vanish from job.api/current and job.api/get
        practice.delete_job(job)

    outcome = nightly(engine, client, tenant, clock, ["job"])["job"]

    assert outcome.error.startswith("held: the nightly sync would remove 20 of ")
    assert "of xpm_jobs" in outcome.error
    assert table_rows(engine, "job", tenant) == jobs and table_rows(engine, "job_task", tenant) == tasks


def test_time_entries_past_the_confirmation_budget_wait_and_are_confirmed_later(engine, sandbox, client, tenant,
                                                                              clock, synced_time):
    practice = sandbox.state.tenant(tenant)
    today = clock.now().date()
    recent = sorted((e for e in practice.times.values() if today - timedelta(days=200) < e.date < today),
                    key=lambda e: e.uuid)[:5]
    stored = live_count(engine, "timesheet", tenant)
    for entry in recent:
        practice.delete_time(entry)
    gone = sorted(entry.uuid for entry in recent)
    budget = SyncOptions(confirm_missing_time=2, removal_limits=RemovalLimits())

    first = nightly(engine, client, tenant, clock, ["timesheet"], options=budget)["timesheet"]
    assert first.ok and first.table("timesheet").deleted == 2
    with engine.connect() as conn:
        waiting = conn.execute(select(unconfirmed_removals.c.entity_key)).scalars().all()
    assert len(waiting) == 3 and set(waiting) < set(gone)
    assert live_count(engine, "timesheet", tenant) == stored - 2  # the other 3 are not deleted unconfirmed

    second = nightly(engine, client, tenant, clock, ["timesheet"], options=budget)["timesheet"]
    third = nightly(engine, client, tenant, clock, ["timesheet"], options=budget)["timesheet"]
    assert second.table("timesheet").deleted + third.table("timesheet").deleted == 3
    assert live_count(engine, "timesheet", tenant) == stored - 5
    with engine.connect() as conn:
        assert conn.execute(select(unconfirmed_removals)).all() == []


def test_a_waiting_entry_is_confirmed_even_after_its_date_left_the_window(engine, sandbox, client, tenant, clock,
                                                                         synced_time):
    practice = sandbox.state.tenant(tenant)
    table = table_for("timesheet")
    with engine.connect() as conn:  # the oldest stored entry: 16 months back, outside the nightly's 15
        oldest = conn.execute(select(table.c.uuid).where(table.c.tenant_id == tenant)
                              .order_by(table.c.entry_date, table.c.uuid).limit(1)).scalar()
    old = practice.times[oldest]
    practice.delete_time(old)
    with engine.begin() as conn:
        conn.execute(unconfirmed_removals.insert().values(tenant_id=tenant, entity="timesheet", entity_key=old.uuid,
                                                          first_missing_at=clock.now(), checks=1))

    outcome = nightly(engine, client, tenant, clock, ["timesheet"])["timesheet"]

    assert outcome.ok and outcome.table("timesheet").deleted == 1
    with engine.connect() as conn:
        assert conn.execute(select(table.c._deleted_at).where(table.c.uuid == old.uuid)).scalar() is not None


def _answering(body: bytes, tenant: str, clock) -> XPMClient:
    """A client whose XPM answers every call with ``body`` (a well-formed lie)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body,
                                                                   headers={"Content-Type": "text/xml"}))
    return XPMClient(base_url="https://xpm.invalid/practicemanager/3.1/", tenant_id=tenant, clock=clock,
                     tokens=_StaticTokens(), transport=transport)


class _StaticTokens(SandboxTokens):
    def __init__(self) -> None:
        from xpm_pipeline.secrets import Secret

        self.current = Secret("token")


@pytest.mark.parametrize("read, element", [
    (lambda c: c.current_jobs(), "job.api/current answered without <Jobs>"),
    (lambda c: c.staff(), "staff.api/list answered without <StaffList>"),
    (lambda c: c.task_list(), "task.api/list answered without <TaskList>"),
    (lambda c: c.client_groups(), "clientgroup.api/list answered without <Groups>"),
    (lambda c: c.clients(), "client.api/list answered without <Clients>"),
    (lambda c: c.client_group("g1"), "clientgroup.api/get/g1 answered without <Group>"),
    (lambda c: c.job("J000001"), "job.api/get/J000001 answered without <Job>"),
    (lambda c: c.get("timesheet", "t1"), "time.api/get/t1 answered without <Time>"),
])
def test_an_answer_without_its_list_element_is_an_error_not_an_empty_list(read, element, clock):
    with _answering(b"<Response><Status>OK</Status></Response>", "t", clock) as xpm:
        with pytest.raises(XPMIncompleteAnswer) as raised:
            read(xpm)
    assert str(raised.value) == f"XPM {element}"


def test_an_empty_list_element_is_a_legal_answer(clock):
    with _answering(b"<Response><Status>OK</Status><StaffList /></Response>", "t", clock) as xpm:
        assert len(xpm.staff()["staff"]) == 0
    with _answering(b"<Response><Status>OK</Status><Jobs></Jobs></Response>", "t", clock) as xpm:
        assert len(xpm.current_jobs()["job"]) == 0


def test_accepting_an_unknown_table_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown table 'xpm_nope' to accept removals for; choose from xpm_clients"):
        table_name("xpm_nope")
    assert table_name("staff") == table_name("xpm_staff") == "xpm_staff"


def test_the_time_of_a_job_xpm_deleted_goes_with_it_without_a_read_per_entry(engine, sandbox, client, tenant, clock,
                                                                            synced_time):
    practice = sandbox.state.tenant(tenant)
    table = table_for("timesheet")
    with engine.connect() as conn:  # the job with the most time in the nightly window
        job_number, entries = conn.execute(
            select(table.c.job_number, func.count()).where(table.c.tenant_id == tenant, table.c._deleted_at.is_(None))
            .group_by(table.c.job_number).order_by(func.count().desc(), table.c.job_number).limit(1)).one()
    assert entries > 2
    practice.delete_job(practice.jobs[job_number])  # the job, its tasks and its time vanish from XPM
    budget = SyncOptions(confirm_missing_time=2, removal_limits=RemovalLimits(share=0.5, min_rows=10))

    outcomes = nightly(engine, client, tenant, clock, ["job", "timesheet"], options=budget)

    assert outcomes["job"].ok and outcomes["timesheet"].ok, outcomes
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).where(table.c.tenant_id == tenant, table.c.job_number == job_number,
                                                       table.c._deleted_at.is_(None))).scalar()
        waiting = conn.execute(select(func.count()).select_from(unconfirmed_removals)).scalar()
    assert (left, waiting) == (0, 0)
