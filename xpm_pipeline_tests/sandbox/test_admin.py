"""The /_sandbox/ admin interface: tenants, tokens, clock, log, limits, and every out-of-band edit."""

from __future__ import annotations

import httpx

from xpm_pipeline_tests.sandbox.conftest import SSL_CONTEXT, Api


def test_tenants_token_and_info(sandbox):
    with httpx.Client(base_url=sandbox.base_url + "/_sandbox/", verify=SSL_CONTEXT) as admin:
        tenants = admin.get("tenants").json()
        assert [t["tenant_id"] for t in tenants] == sandbox.tenant_ids
        assert all(set(t) == {"tenant_id", "name", "size"} and t["size"] == "small" for t in tenants)
        assert tenants[0]["name"] != tenants[1]["name"]
        tokens = admin.post(f"tenants/{tenants[0]['tenant_id']}/token").json()
        assert {"access_token", "refresh_token", "expires_in"} <= set(tokens) and tokens["expires_in"] == 1800
        api = Api(sandbox, tenants[0]["tenant_id"], token=tokens)
        api.xml("staff.api/list")
        info = admin.get(f"tenants/{tenants[1]['tenant_id']}").json()
        assert info["job_states"]["INPROGRESS"]["name"] == "Work in Progress"  # renamed in this practice
        assert info["job_states"]["COMPLETED"]["completes_job"] is True
        assert info["counts"]["times"] == len(sandbox.state.tenant(tenants[1]["tenant_id"]).times)
        assert admin.post("tenants/nope/token").status_code == 404
        assert admin.get("nothing").status_code == 404
        assert admin.delete("tenants").status_code == 405
        assert "POST /_sandbox/faults" in admin.get("").json()["endpoints"]


def test_clock(sandbox, clock):
    with httpx.Client(base_url=sandbox.base_url + "/_sandbox/", verify=SSL_CONTEXT) as admin:
        assert admin.get("clock").json() == {"now": "2026-11-23T09:00:00+00:00"}
        assert admin.post("clock", json={"advance_seconds": 90}).json()["now"] == "2026-11-23T09:01:30+00:00"
        assert clock.now().isoformat() == "2026-11-23T09:01:30+00:00"  # the shared clock moved
        assert admin.post("clock", json={"now": "2027-01-01T00:00:00Z"}).json()["now"] == "2027-01-01T00:00:00+00:00"
        assert admin.post("clock", json={}).status_code == 400
        assert admin.post("clock", json={"now": "yesterday"}).status_code == 400


def test_log_and_limits(api):
    api.xml("staff.api/list")
    api.get("task.api/get/nope")
    log = api.admin("GET", "log").json()
    assert [e["path"] for e in log] == ["/practicemanager/3.1/staff.api/list", "/practicemanager/3.1/task.api/get/nope"]
    first = log[0]
    assert set(first) >= {"seq", "at", "method", "path", "query", "tenant_id", "status", "fault", "bytes"}
    assert first["tenant_id"] == api.tenant_id and first["status"] == 200 and first["bytes"] > 0
    assert first["at"] == "2026-11-23T09:00:00+00:00" and first["fault"] is None
    assert api.admin("GET", "log?tenant=" + api.sb.tenant_ids[1]).json() == []
    assert api.admin("GET", "limits").json()["usage"][api.tenant_id]["minute"] == 2
    assert api.admin("DELETE", "limits").json() == {"reset": True}
    assert api.admin("DELETE", "log").json() == {"cleared": 2}
    assert api.sb.request_log == []


def test_time_edits(api):
    tid = api.tenant_id
    entry = next(iter(api.tenant.times.values()))
    edited = api.admin("PATCH", f"tenants/{tid}/time/{entry.uuid}", {"minutes": 77, "note": "Fixed & re-done"})
    assert edited.status_code == 200, edited.text
    row = edited.json()
    assert row["uuid"] == entry.uuid and row["minutes"] == 77 and row["note"] == "Fixed & re-done"
    assert row["job_number"] == entry.job.job_number and row["entry_date"] == entry.date.isoformat()
    got = api.xml(f"time.api/get/{entry.uuid}")
    assert got.findtext("Time/Minutes") == "77"
    assert api.admin("PATCH", f"tenants/{tid}/time/{entry.uuid}", {"minutse": 1}).status_code == 400

    job = next(j for j in api.tenant.jobs.values() if j.tasks)
    added = api.admin("POST", f"tenants/{tid}/time", {
        "job_number": job.job_number, "task_uuid": job.tasks[0].uuid, "staff_uuid": next(iter(api.tenant.staff)),
        "entry_date": "2026-11-22", "start_time": "13:00", "end_time": "14:15", "note": "Phone call"})
    assert added.status_code == 200, added.text
    new = added.json()
    assert new["minutes"] == 75 and new["start_time"] == "13:00" and new["end_time"] == "14:15"
    assert new["uuid"] in [e.text for e in api.xml("time.api/list", **{"from": "20261122", "to": "20261122"})
                           .iterfind("Times/Time/UUID")]
    removed = api.admin("DELETE", f"tenants/{tid}/time/{new['uuid']}")
    assert removed.json()["uuid"] == new["uuid"]
    api.error(api.get(f"time.api/get/{new['uuid']}"), 200)
    assert api.admin("DELETE", f"tenants/{tid}/time/{new['uuid']}").status_code == 404


def test_staff_add(api):
    made = api.admin("POST", f"tenants/{api.tenant_id}/staff", {"name": "Zoë Ngata", "email": "zoe@firm.example"}).json()
    assert made["name"] == "Zoë Ngata" and made["uuid"] in api.tenant.staff
    assert made["uuid"] in [e.text for e in api.xml("staff.api/list").iterfind("StaffList/Staff/UUID")]
    renamed = api.admin("PATCH", f"tenants/{api.tenant_id}/staff/{made['uuid']}", {"payroll_code": "P9"}).json()
    assert renamed["payroll_code"] == "P9"
    assert api.admin("POST", f"tenants/{api.tenant_id}/staff", {"email": "x"}).status_code == 400


def test_job_edits(api):
    tid, tenant = api.tenant_id, api.tenant
    client = next(c for c in tenant.clients.values() if not c.is_deleted)
    task_type = next(iter(tenant.task_types.values()))
    made = api.admin("POST", f"tenants/{tid}/jobs", {
        "name": "Payroll Dec 2026", "client_uuid": client.uuid, "start_date": "2026-12-01", "due_date": "20261231",
        "budget": "950", "state": "INPROGRESS", "tasks": [{"task_uuid": task_type.uuid, "estimated_minutes": 60}]})
    assert made.status_code == 200, made.text
    job = made.json()
    number = job["job_number"]
    assert job["state"] == "In Progress" and job["state_code"] == "INPROGRESS" and job["budget"] == "950.00"
    assert len(job["tasks"]) == 1 and job["tasks"][0]["task_uuid"] == task_type.uuid
    assert job["tasks"][0]["job_number"] == number
    assert number in [e.text for e in api.xml("job.api/current").iterfind("Jobs/Job/ID")]
    created = api.xml("job.api/list", **{"from": "20261123", "to": "20261123"})
    assert number in [e.text for e in created.iterfind("Jobs/Job/ID")]

    task = api.admin("POST", f"tenants/{tid}/jobs/{number}/tasks",
                     {"task_uuid": task_type.uuid, "label": "Part 2", "estimated_minutes": 30}).json()
    assert task["label"] == "Part 2" and task["job_number"] == number
    edited = api.admin("PATCH", f"tenants/{tid}/jobs/{number}/tasks/{task['uuid']}",
                       {"estimated_minutes": 45, "completed": True}).json()
    assert edited["estimated_minutes"] == 45 and edited["completed"] is True
    assert api.admin("DELETE", f"tenants/{tid}/jobs/{number}/tasks/{task['uuid']}").status_code == 200
    assert task["uuid"] not in [e.text for e in api.xml(f"job.api/get/{number}").iterfind("Job/Tasks/Task/UUID")]

    renamed = api.admin("PATCH", f"tenants/{tid}/jobs/{number}", {"name": "Payroll — December", "due_date": "2027-01-15"})
    assert renamed.json()["name"] == "Payroll — December" and renamed.json()["due_date"] == "2027-01-15"

    done = api.admin("POST", f"tenants/{tid}/jobs/{number}/complete").json()
    assert done["state"] == "Completed" and done["completed_date"] == "2026-11-23"
    assert number not in [e.text for e in api.xml("job.api/current").iterfind("Jobs/Job/ID")]
    assert api.xml(f"job.api/get/{number}").findtext("Job/State") == "Completed"

    assert api.admin("DELETE", f"tenants/{tid}/jobs/{number}").json()["job_number"] == number
    api.error(api.get(f"job.api/get/{number}"), 200)
    assert api.admin("GET", f"tenants/{tid}/jobs/{number}").status_code == 404
    assert api.admin("POST", f"tenants/{tid}/jobs", {"name": "No client"}).status_code == 400


def test_client_contact_and_group_edits(api, clock):
    tid, tenant = api.tenant_id, api.tenant
    client = next(c for c in tenant.clients.values() if c.contacts and not c.is_deleted)
    before = client.modified
    clock.advance(30)
    edited = api.admin("PATCH", f"tenants/{tid}/clients/{client.uuid}", {"website": "https://new.example",
                                                                      "is_archived": True}).json()
    assert edited["website"] == "https://new.example" and edited["is_archived"] is True
    assert client.modified > before
    bumped = client.modified
    clock.advance(30)
    contact = api.admin("PATCH", f"tenants/{tid}/clients/{client.uuid}/contacts/{client.contacts[0].uuid}",
                        {"name": "Tom Hale", "is_primary": True}).json()
    assert contact["name"] == "Tom Hale" and contact["client_uuid"] == client.uuid
    assert client.modified == bumped  # contact edits do not bump the client
    added = api.admin("POST", f"tenants/{tid}/clients/{client.uuid}/contacts", {"name": "Ana Reyes"}).json()
    assert added["uuid"] in [c.uuid for c in client.contacts] and client.modified == bumped
    assert [c["name"] for c in api.admin("GET", f"tenants/{tid}/clients/{client.uuid}").json()["contacts"]][-1] == \
        "Ana Reyes"
    assert client.uuid not in [e.text for e in api.xml("client.api/paged-list", pageSize="500")
                               .iterfind("Clients/Client/UUID")]  # now archived

    group = next(iter(tenant.groups.values()))
    outsider = next(c for c in tenant.clients.values() if not c.is_deleted and c not in group.members)
    members = api.admin("POST", f"tenants/{tid}/groups/{group.uuid}/members", {"client_uuid": outsider.uuid}).json()
    assert outsider.uuid in [m["client_uuid"] for m in members["members"]]
    got = api.xml(f"clientgroup.api/get/{group.uuid}")
    assert outsider.uuid in [e.text for e in got.iterfind("Group/Clients/Client/UUID")]
    detailed = api.xml(f"client.api/get/{outsider.uuid}")
    assert group.uuid in [e.text for e in detailed.iterfind("Client/Groups/Group/UUID")]
