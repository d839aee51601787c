"""Every read endpoint against the live model: filters, ranges, paging, flags and error answers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from xpm_pipeline.sandbox import SandboxServer
from xpm_pipeline_tests.sandbox.conftest import Api, make_config

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def texts(root, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path)]


def test_client_list_includes_archived_and_deleted_flagged_yes(api):
    root = api.xml("client.api/list")
    clients = root.findall("Clients/Client")
    assert len(clients) == len(api.tenant.clients)
    model = {c.uuid: c for c in api.tenant.clients.values()}
    for element in clients:
        client = model[element.findtext("UUID")]
        assert element.findtext("IsArchived") == ("Yes" if client.is_archived else "No")
        assert element.findtext("IsDeleted") == ("Yes" if client.is_deleted else "No")
        assert element.find("Contacts") is not None
        assert element.find("TaxNumber") is None and element.find("Groups") is None  # detailed only
    assert any(c.is_archived for c in model.values()) and any(c.is_deleted for c in model.values())


def test_detailed_client_list_and_get(api):
    root = api.xml("client.api/list", detailed="true")
    element = root.find("Clients/Client")
    assert element.find("Groups") is not None and element.find("Notes") is not None
    masked = [t for t in texts(root, "Clients/Client/TaxNumber") if t]
    assert masked and all(t.startswith("******") and len(t) == 9 for t in masked)
    person = next(c for c in api.tenant.clients.values() if c.date_of_birth)
    got = api.xml(f"client.api/get/{person.uuid}")
    assert got.findtext("WebUrl").startswith("https://")
    assert got.findtext("Client/DateOfBirth") == person.date_of_birth.isoformat()  # date-only on get
    listed = next(e for e in root.iterfind("Clients/Client") if e.findtext("UUID") == person.uuid)
    assert listed.findtext("DateOfBirth") == f"{person.date_of_birth.isoformat()}T00:00:00"
    assert api.error(api.get(f"client.api/get/{UNKNOWN}"), 200) == f"Unable to find client {UNKNOWN}"


def test_modifiedsince_and_contact_edits(api, clock):
    since = clock.now().strftime("%Y-%m-%dT%H:%M:%S")
    assert api.xml("client.api/list", modifiedsince=since).find("Clients").__len__() == 0
    client = next(c for c in api.tenant.clients.values() if c.contacts)
    clock.advance(60)
    api.renew()
    assert api.admin("PATCH", f"tenants/{api.tenant_id}/clients/{client.uuid}/contacts/{client.contacts[0].uuid}",
                     {"position": "Chief Baker"}).status_code == 200
    assert texts(api.xml("client.api/list", modifiedsince=since), "Clients/Client/UUID") == []
    assert api.admin("PATCH", f"tenants/{api.tenant_id}/clients/{client.uuid}", {"phone": "03 555 0000"}).status_code == 200
    root = api.xml("client.api/list", modifiedsince=since, detailed="true")
    assert texts(root, "Clients/Client/UUID") == [client.uuid]
    assert root.findtext("Clients/Client/Contacts/Contact/Position") == "Chief Baker"
    # The parameter name is case-insensitive (the spec spells it modifiedSince); the value is UTC.
    assert texts(api.xml("client.api/list", modifiedSince=since), "Clients/Client/UUID") == [client.uuid]
    api.error(api.get("client.api/list", modifiedsince="2026-11-23"), 400)


def test_contact_edit_bumps_modified_with_the_switch(clock):
    with SandboxServer(make_config(clock=clock, contact_edit_bumps_modified=True)) as sb:
        api = Api(sb)
        client = next(c for c in api.tenant.clients.values() if c.contacts)
        since = clock.now().strftime("%Y-%m-%dT%H:%M:%S")
        api.admin("PATCH", f"tenants/{api.tenant_id}/clients/{client.uuid}/contacts/{client.contacts[0].uuid}",
                  {"mobile": "029 000 000"})
        assert texts(api.xml("client.api/list", modifiedsince=since), "Clients/Client/UUID") == [client.uuid]


def test_paged_list_excludes_archived_and_deleted_and_pages(api):
    live = [c.uuid for c in api.tenant.clients.values() if not c.is_archived and not c.is_deleted]
    seen, token, pages = [], None, 0
    while True:
        params = {"pageSize": "7"} | ({"pageToken": token} if token else {})
        root = api.xml("client.api/paged-list", **params)
        pages += 1
        uuids = texts(root, "Clients/Client/UUID")
        assert len(uuids) <= 7
        seen += uuids
        assert root.find("Pagination/Links/First") is not None
        token = root.findtext("Pagination/Links/Next")
        if not token:
            break
    assert seen == live and pages == -(-len(live) // 7)
    first = api.xml("client.api/paged-list")
    assert len(first.findall("Clients/Client")) == min(50, len(live))
    for bad in ({"pageSize": "0"}, {"pageSize": "501"}, {"pageSize": "x"}, {"pageToken": "garbage!"}):
        api.error(api.get("client.api/paged-list", **bad), 400)


def test_client_search(api):
    client = next(c for c in api.tenant.clients.values() if not c.is_deleted)
    word = client.name.split()[0]
    found = texts(api.xml("client.api/search", query=word.lower()), "Clients/Client/Name")
    assert client.name in found and all(word.casefold() in n.casefold() for n in found)
    api.error(api.get("client.api/search"), 400)


def test_groups_staff_and_task_list(api):
    groups = api.xml("clientgroup.api/list")
    assert len(groups.findall("Groups/Group")) == len(api.tenant.groups)
    group = next(g for g in api.tenant.groups.values() if g.members)
    got = api.xml(f"clientgroup.api/get/{group.uuid}")
    assert texts(got, "Group/Clients/Client/UUID") == [c.uuid for c in group.members]
    assert got.findtext("Group/Taxable") in ("Yes", "No")
    api.error(api.get(f"clientgroup.api/get/{UNKNOWN}"), 200)

    staff = api.xml("staff.api/list")
    assert texts(staff, "StaffList/Staff/UUID") == list(api.tenant.staff)
    one = next(iter(api.tenant.staff.values()))
    assert api.xml(f"staff.api/get/{one.uuid}").findtext("Staff/Name") == one.name
    api.error(api.get(f"staff.api/get/{UNKNOWN}"), 200)

    tasks = api.xml("task.api/list")
    assert texts(tasks, "TaskList/Task/UUID") == list(api.tenant.task_types)
    task = next(iter(api.tenant.task_types.values()))
    assert api.xml(f"task.api/get/{task.uuid.upper()}").findtext("Task/Name") == task.name
    api.error(api.get(f"task.api/get/{UNKNOWN}"), 200)


def test_current_jobs_and_detail(api):
    tenant = api.tenant
    current = [j for j in tenant.jobs.values() if not tenant.job_is_complete(j)]
    plain = api.xml("job.api/current")
    assert texts(plain, "Jobs/Job/ID") == [j.job_number for j in current]
    assert plain.find("Jobs/Job/Tasks") is None
    assert "Completed" not in texts(plain, "Jobs/Job/State")
    detailed = api.xml("job.api/current", detailed="true")
    job = current[0]
    element = detailed.find("Jobs/Job")
    assert texts(element, "Tasks/Task/UUID") == [t.uuid for t in job.tasks]
    assert element.find("Milestones") is not None and element.find("Notes") is not None


def test_job_get_list_and_errors(api):
    tenant = api.tenant
    done = next(j for j in tenant.jobs.values() if tenant.job_is_complete(j))
    got = api.xml(f"job.api/get/{done.job_number}")
    assert got.findtext("WebUrl") and got.findtext("Job/State") == "Completed"
    assert got.findtext("Job/CompletedDate") == f"{done.completed_date.isoformat()}T00:00:00"
    assert got.find("Job/Tasks/Task") is not None
    assert api.error(api.get("job.api/get/J999999"), 200) == "Unable to find job J999999"

    start = date(2026, 1, 1)
    end = start + timedelta(days=365)
    listed = api.xml("job.api/list", **{"from": start.strftime("%Y%m%d"), "to": end.strftime("%Y%m%d")})
    expected = [j.job_number for j in tenant.jobs.values() if start <= j.created.date() <= end]
    assert texts(listed, "Jobs/Job/ID") == expected and expected
    assert listed.find("Jobs/Job/Tasks") is None
    detailed = api.xml("job.api/list", detailed="true", **{"from": "20260101", "to": "20261231"})
    assert detailed.find("Jobs/Job/Tasks") is not None


@pytest.mark.parametrize("path", ["job.api/list", "time.api/list", "time.api/staff/{staff}"])
@pytest.mark.parametrize("params", [
    {}, {"from": "20260101"}, {"to": "20260101"}, {"from": "2026-01-01", "to": "2026-02-01"},
    {"from": "20260101", "to": "20270102"}, {"from": "20260201", "to": "20260101"}, {"from": "20261301", "to": "20261302"},
])
def test_date_ranges_are_checked(api, path, params):
    staff = next(iter(api.tenant.staff))
    api.error(api.get(path.format(staff=staff), **params), 400)


def test_range_of_exactly_365_days_is_allowed(api):
    api.xml("time.api/list", **{"from": "20250101", "to": "20260101"})


def test_job_tasks_filters(api):
    tenant = api.tenant
    open_tasks = api.xml("job.api/tasks", complete="false")
    assert set(texts(open_tasks, "Jobs/Job/Tasks/Task/Completed")) == {"false"}
    expected = [t.uuid for j in tenant.jobs.values() if not tenant.job_is_complete(j) for t in j.tasks if not t.completed]
    assert texts(open_tasks, "Jobs/Job/Tasks/Task/UUID") == expected
    due = date(2026, 12, 31)
    dues = api.xml("job.api/tasks", due=due.strftime("%Y%m%d"))
    assert all(d[:10] <= due.isoformat() for d in texts(dues, "Jobs/Job/Tasks/Task/DueDate"))
    assert len(dues.findall("Jobs/Job/Tasks/Task")) == len(dues.findall("Jobs/Job/Tasks/Task/DueDate"))
    starts = api.xml("job.api/tasks", start="20260101")
    assert all(d[:10] >= "2026-01-01" for d in texts(starts, "Jobs/Job/Tasks/Task/StartDate"))
    api.error(api.get("job.api/tasks", complete="maybe"), 400)


def test_time_list_by_date(api):
    tenant = api.tenant
    start, end = date(2026, 1, 1), date(2026, 6, 30)
    root = api.xml("time.api/list", **{"from": "20260101", "to": "20260630"})
    expected = [e.uuid for e in tenant.times_between(start, end)]
    assert texts(root, "Times/Time/UUID") == expected and len(expected) > 100
    dates = texts(root, "Times/Time/Date")
    assert dates == sorted(dates) and dates[0] >= "2026-01-01" and dates[-1] <= "2026-06-30T00:00:00"


def test_time_filter_created(clock):
    with SandboxServer(make_config(clock=clock, time_filter="created")) as sb:
        api = Api(sb)
        root = api.xml("time.api/list", **{"from": "20261101", "to": "20261123"})
        model = {e.uuid: e for e in api.tenant.times.values()}
        uuids = texts(root, "Times/Time/UUID")
        assert uuids
        for uuid in uuids:
            created = datetime.fromtimestamp(model[uuid].created, timezone.utc).date()
            assert date(2026, 11, 1) <= created <= date(2026, 11, 23)
        # Future-dated entries were created in the past, so they show up under "created".
        assert any(model[u].date > date(2026, 11, 23) for u in uuids)


def test_time_by_job_staff_and_get(api):
    tenant = api.tenant
    job = max(tenant.jobs.values(), key=lambda j: len(j.times))
    by_job = api.xml(f"time.api/job/{job.job_number}")
    assert sorted(texts(by_job, "Times/Time/UUID")) == sorted(e.uuid for e in job.times)
    assert set(texts(by_job, "Times/Time/Job/ID")) == {job.job_number}
    window = api.xml(f"time.api/job/{job.job_number}", **{"from": "20260101", "to": "20261231"})
    assert all("2026-" in d for d in texts(window, "Times/Time/Date"))
    api.error(api.get("time.api/job/NOPE-1"), 200)

    staff = next(iter(tenant.staff.values()))
    root = api.xml(f"time.api/staff/{staff.uuid}", **{"from": "20260101", "to": "20261231"})
    expected = [e.uuid for e in tenant.times_between(date(2026, 1, 1), date(2026, 12, 31)) if e.staff is staff]
    assert texts(root, "Times/Time/UUID") == expected
    api.error(api.get(f"time.api/staff/{UNKNOWN}", **{"from": "20260101", "to": "20260102"}), 200)

    entry = next(e for e in tenant.times.values() if e.start is not None)
    got = api.xml(f"time.api/get/{entry.uuid}")
    assert got.findtext("Time/Start") == f"{entry.start // 60:02d}:{entry.start % 60:02d}"
    assert int(got.findtext("Time/Minutes")) == entry.end - entry.start
    plain = next(e for e in tenant.times.values() if e.start is None)
    assert api.xml(f"time.api/get/{plain.uuid}").find("Time/Start") is None
    api.error(api.get(f"time.api/get/{UNKNOWN}"), 200)


def test_data_has_negative_minutes_escaped_text_and_non_ascii(api):
    raw = api.get("time.api/list", **{"from": "20251124", "to": "20261123"}).content
    root = api.ok(api.get("time.api/list", **{"from": "20251124", "to": "20261123"}))
    assert any(int(m) < 0 for m in texts(root, "Times/Time/Minutes"))
    assert b"&amp;" in raw and b"&lt;" in raw
    assert any(not n.isascii() for n in texts(root, "Times/Time/Staff/Name") + texts(root, "Times/Time/Note"))


def test_job_numbers_are_not_assumed_to_start_with_j(clock):
    with SandboxServer(make_config(clock=clock, tenants=3)) as sb:
        api = Api(sb, sb.tenant_ids[2])
        numbers = texts(api.xml("job.api/current"), "Jobs/Job/ID")
        assert numbers and all(n.startswith("JOB") for n in numbers)
        client = next(c for c in api.tenant.clients.values() if not c.is_deleted)
        made = api.admin("POST", f"tenants/{api.tenant_id}/jobs",
                         {"name": "Custom", "client_uuid": client.uuid, "job_number": "ACME-7"})
        assert made.status_code == 200, made.text
        assert api.xml("job.api/get/ACME-7").findtext("Job/ID") == "ACME-7"


def test_unknown_endpoint_and_wrong_method(api):
    api.error(api.get("client.api/nothing"), 404)
    api.error(api.send("POST", "client.api/list", "<Client/>"), 405)
