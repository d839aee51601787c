"""The XPM client against a running sandbox: every read, every write, and the failure rules on the wire."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import httpx
import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import api_base_from
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.xpm.client import RetryPolicy, XPMClient
from xpm_pipeline.xpm.errors import (
    XPMAuthError,
    XPMNotFound,
    XPMParseError,
    XPMResponseError,
    XPMUnclearOutcome,
)
from xpm_pipeline.xpm.windows import DateWindow, add_months, month_windows, split_range
from xpm_pipeline_tests.support import SandboxTokens, admin, sandbox_client

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sandbox(clock):
    with SandboxServer(SandboxConfig(size="small", seed=3, tenants=2, clock=clock), port=0) as server:
        yield server


@pytest.fixture
def tenant(sandbox) -> str:
    return sandbox.tenant_ids[0]


@pytest.fixture
def tokens(sandbox, tenant) -> SandboxTokens:
    return SandboxTokens(sandbox, tenant)


@pytest.fixture
def client(sandbox, tenant, tokens, clock):
    with sandbox_client(sandbox, tenant, clock, tokens=tokens, retry=RetryPolicy(max_attempts=3),
                        timeout=httpx.Timeout(5.0)) as xpm:
        yield xpm


def counts(sandbox, tenant) -> dict:
    return admin(sandbox, "GET", f"tenants/{tenant}")["counts"]


def all_time(client: XPMClient, today: date):
    rows = []
    for window in split_range(add_months(today, -48), add_months(today, 24)):
        rows.extend(client.time_entries(window).records())
    return rows


# --- reads ---------------------------------------------------------------------------------------


def test_every_list_read_matches_the_sandbox(sandbox, tenant, client):
    expected = counts(sandbox, tenant)
    clients = client.clients(detailed=True)
    assert len(clients["client"]) == expected["clients"]
    assert len(clients["client_contact"]) == expected["contacts"]
    assert len(client.client_groups()["client_group"]) == expected["groups"]
    assert len(client.staff()["staff"]) == expected["staff"]
    assert len(client.task_list()["task"]) == expected["tasks"]
    jobs = client.current_jobs(detailed=True)
    assert len(jobs["job"]) == expected["current_jobs"]
    assert set(jobs["job_task"].column("job_uuid")) <= set(jobs["job"].column("uuid"))
    assert len(all_time(client, START.date())) == expected["times"]


def test_gets_return_the_same_entities_as_lists(client):
    staff = client.staff()["staff"].records()[0]
    assert client.get("staff", staff["uuid"])["staff"].records() == [staff]
    task = client.task_list()["task"].records()[0]
    assert client.get("task", task["uuid"])["task"].records() == [task]
    one_client = client.clients(detailed=True)["client"].records()[0]
    assert client.get("client", one_client["uuid"])["client"].records()[0]["name"] == one_client["name"]
    job = client.current_jobs()["job"].records()[0]
    detailed = client.job(job["job_number"])
    assert detailed["job"].records()[0]["uuid"] == job["uuid"]
    assert detailed.extras.get("WebUrl", "").startswith("http")


def test_group_members_come_from_group_get(sandbox, tenant, client):
    groups = client.client_groups()["client_group"].column("uuid")
    members = [m for uuid in groups for m in client.client_group(uuid)["client_group_member"].records()]
    assert members, "the seeded practice has group members"
    client_ids = set(client.clients()["client"].column("uuid"))
    assert {m["client_uuid"] for m in members} <= client_ids


def test_paged_clients_leave_out_archived_and_deleted(client):
    everyone = client.clients(detailed=True)["client"].records()
    live = [c for c in everyone if not c["is_archived"] and not c["is_deleted"]]
    paged = [row for page in client.clients_paged(page_size=7) for row in page["client"].records()]
    assert sorted(c["uuid"] for c in paged) == sorted(c["uuid"] for c in live)


def test_modified_since_only_brings_edited_clients(sandbox, tenant, client, clock):
    target = client.clients()["client"].records()[0]
    clock.advance(3600)
    since = clock.now()
    assert len(client.clients(modified_since=since)["client"]) == 0
    clock.advance(60)
    admin(sandbox, "PATCH", f"tenants/{tenant}/clients/{target['uuid']}", {"phone": "09 555 0101"})
    changed = client.clients(modified_since=since)["client"].records()
    assert [c["uuid"] for c in changed] == [target["uuid"]] and changed[0]["phone"] == "09 555 0101"


def test_search_finds_a_client_by_name(client):
    target = client.clients()["client"].records()[0]
    found = client.client_search(target["name"])["client"].column("uuid")
    assert target["uuid"] in found


def test_time_by_staff_and_job_agree_with_the_list(client):
    month = month_windows(add_months(START.date(), -2), START.date())[0]
    entries = client.time_entries(month).records()
    assert entries
    one = entries[0]
    by_staff = client.time_by_staff(one["staff_uuid"], month).records()
    assert one in by_staff and {e["staff_uuid"] for e in by_staff} == {one["staff_uuid"]}
    by_job = client.time_by_job(one["job_number"], month).records()
    assert one["uuid"] in {e["uuid"] for e in by_job}
    assert client.get("timesheet", one["uuid"])["timesheet"].records() == [one]


def test_jobs_created_in_a_window_and_tasks_endpoint(client):
    window = split_range(add_months(START.date(), -11), START.date())[0]
    created = client.jobs_created(window)["job"]
    tasks = client.jobs_with_tasks(complete=False)
    assert len(tasks["job_task"]) > 0
    assert all(value is False for value in tasks["job_task"].column("completed"))
    assert len(created) >= 0


def test_unknown_job_is_not_found(client):
    with pytest.raises(XPMNotFound):
        client.job("NO-SUCH-JOB")


def test_a_range_over_a_year_is_refused_before_sending(client):
    with pytest.raises(ValueError, match="at most a year"):
        client.time_entries(DateWindow(date(2024, 1, 1), date(2025, 6, 1)))


# --- writes --------------------------------------------------------------------------------------


def _a_task_on_a_job(client):
    jobs = client.current_jobs(detailed=True)
    task = jobs["job_task"].records()[0]
    staff = client.staff()["staff"].column("uuid")[0]
    return task, staff


def test_time_add_update_delete(client, sandbox, tenant):
    task, staff = _a_task_on_a_job(client)
    before = counts(sandbox, tenant)["times"]
    added = client.add_time(Job=task["job_number"], TaskUUID=task["uuid"], StaffUUID=staff, Date="2026-11-20",
                            Minutes=75, Note="Reconcile & review")
    assert added.new_id and counts(sandbox, tenant)["times"] == before + 1
    day = DateWindow(date(2026, 11, 20), date(2026, 11, 20))
    mine = [e for e in client.time_by_staff(staff, day).records() if e["uuid"] == added.new_id]
    assert mine and mine[0]["minutes"] == 75 and mine[0]["note"] == "Reconcile & review"

    client.update_time(UUID=added.new_id, Job=task["job_number"], TaskUUID=task["uuid"], StaffUUID=staff,
                       Date="20261120", Start="09:00", End="10:30", Note="ranged")
    updated = client.get("timesheet", added.new_id)["timesheet"].records()[0]
    assert (updated["minutes"], updated["start_time"], updated["end_time"]) == (90, "09:00", "10:30")

    client.delete_time(added.new_id)
    assert counts(sandbox, tenant)["times"] == before
    assert added.new_id not in {e["uuid"] for e in client.time_by_staff(staff, day).records()}


def test_job_update_and_state(client):
    job = client.current_jobs()["job"].records()[0]
    client.update_job(ID=job["job_number"], Name=job["name"], Budget="1234.50", DueDate="2026-12-01")
    after = client.job(job["job_number"])["job"].records()[0]
    assert str(after["budget"]) == "1234.50" and after["due_date"] == date(2026, 12, 1)
    client.set_job_state(job["job_number"], "COMPLETED")
    assert job["uuid"] not in client.current_jobs()["job"].column("uuid")
    assert client.job(job["job_number"])["job"].records()[0]["state"] == "Completed"


def test_job_task_add_update_complete_reopen(client):
    job = client.current_jobs()["job"].records()[0]
    task_type = client.task_list()["task"].column("uuid")[0]
    added = client.add_job_task(Job=job["job_number"], TaskUUID=task_type, EstimatedMinutes=90, Label="Extra")
    assert added.new_id

    def on_job():
        tasks = client.job(job["job_number"])["job_task"].records()
        return next(t for t in tasks if t["uuid"] == added.new_id)

    assert on_job()["estimated_minutes"] == 90 and on_job()["task_uuid"] == task_type
    client.update_job_task(UUID=added.new_id, EstimatedMinutes=120, Description="More work")
    assert on_job()["estimated_minutes"] == 120
    client.complete_job_task(added.new_id)
    assert on_job()["completed"] is True
    client.reopen_job_task(added.new_id)
    assert on_job()["completed"] is False


def test_client_add_and_update(client, sandbox, tenant):
    before = counts(sandbox, tenant)["clients"]
    added = client.add_client(Name="Kōwhai Orchards & Co", Email="hello@kowhai.example", WebSite="https://kowhai.example")
    assert added.new_id and counts(sandbox, tenant)["clients"] == before + 1
    client.update_client(UUID=added.new_id, Name="Kōwhai Orchards & Co", Phone="03 555 0199")
    row = client.get("client", added.new_id)["client"].records()[0]
    assert (row["phone"], row["website"]) == ("03 555 0199", "https://kowhai.example")


def test_write_refused_by_xpm_is_a_response_error(client):
    with pytest.raises(XPMResponseError):
        client.add_time(Job="NO-SUCH-JOB", TaskUUID="00000000-0000-4000-8000-000000000000",
                        StaffUUID="00000000-0000-4000-8000-000000000000", Date="2026-11-20", Minutes=10)


# --- failures on the wire ------------------------------------------------------------------------


def fault(sandbox, **spec):
    return admin(sandbox, "POST", "faults", spec)


def test_dropped_response_after_commit_is_unclear_and_written_once(client, sandbox, tenant):
    task, staff = _a_task_on_a_job(client)
    before = counts(sandbox, tenant)["times"]
    fault(sandbox, path="time.api/add", kind="drop_after_commit")
    with pytest.raises(XPMUnclearOutcome):
        client.add_time(Job=task["job_number"], TaskUUID=task["uuid"], StaffUUID=staff, Date="2026-11-21",
                        Minutes=33, Note="dropped answer")
    assert counts(sandbox, tenant)["times"] == before + 1  # committed once, never re-sent
    adds = [e for e in sandbox.request_log if e["path"].endswith("time.api/add")]
    assert len(adds) == 1


def test_200_with_error_status(client, sandbox):
    fault(sandbox, path="staff.api/list", kind="error_200", message="Something broke")
    with pytest.raises(XPMResponseError, match="Something broke") as caught:
        client.staff()
    assert caught.value.status_code == 200


def test_5xx_and_truncated_reads_are_retried(client, sandbox):
    fault(sandbox, path="staff.api/list", kind="status", status=503)
    fault(sandbox, path="task.api/list", kind="truncated")
    fault(sandbox, path="clientgroup.api/list", kind="reset")
    assert len(client.staff()["staff"]) > 0
    assert len(client.task_list()["task"]) > 0
    assert len(client.client_groups()["client_group"]) > 0
    staff_calls = [e for e in sandbox.request_log if e["path"].endswith("staff.api/list")]
    assert len(staff_calls) == 2


def test_hostile_documents_are_refused(client, sandbox):
    fault(sandbox, path="staff.api/list", kind="doctype", count=5)
    with pytest.raises(XPMParseError, match="DOCTYPE"):
        client.staff()
    fault(sandbox, path="task.api/list", kind="malformed", count=5)
    with pytest.raises(XPMParseError, match="malformed"):
        client.task_list()


def test_forced_429_waits_exactly_retry_after(client, sandbox, clock):
    fault(sandbox, path="staff.api/list", kind="rate_limit", retry_after=17, problem="minute")
    clock.sleeps.clear()
    started = clock.now()
    client.staff()
    assert clock.sleeps == [17]
    assert clock.now() - started == timedelta(seconds=17)


def test_minute_limit_on_the_wire_is_waited_out(sandbox, tenant, tokens, clock):
    sandbox.config.minute_limit = 5
    seen = []

    class Observer:
        def before_call(self, call):
            pass

        def after_call(self, call, result):
            seen.append(result)

    with XPMClient(base_url=api_base_from(sandbox.base_url), tenant_id=tenant, tokens=tokens, clock=clock,
                   observers=[Observer()]) as xpm:
        for _ in range(7):
            xpm.staff()
    limited = [r for r in seen if r.status_code == 429]
    assert len(limited) == 1 and limited[0].problem == "minute" and limited[0].retry_after > 0
    assert [r.minute_remaining for r in seen if r.status_code == 200][:5] == [4, 3, 2, 1, 0]
    assert clock.sleeps == [limited[0].retry_after]


def test_expired_token_refreshes_once(client, sandbox, tokens):
    fault(sandbox, path="staff.api/list", kind="expired_token")
    client.staff()
    assert tokens.refreshes == 1


def test_access_token_past_30_minutes_gets_401_then_refresh(client, clock, tokens):
    clock.advance(1801)
    client.staff()
    assert tokens.refreshes == 1


def test_unknown_tenant_is_refused(sandbox, tokens, clock):
    with XPMClient(base_url=api_base_from(sandbox.base_url), tenant_id="00000000-0000-4000-8000-00000000dead",
                   tokens=tokens, clock=clock) as xpm:
        with pytest.raises((XPMAuthError, XPMResponseError)):
            xpm.staff()
