"""Every write endpoint changes the model and answers as XPM does (shapes, new UUIDs, error statuses)."""

from __future__ import annotations

from datetime import date

import pytest

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def open_job(api):
    tenant = api.tenant
    return next(j for j in tenant.jobs.values() if not tenant.job_is_complete(j) and j.tasks)


def timesheet(job, task, staff, *, day="20261120", extra="<Minutes>90</Minutes>", note="Asset register &amp; more"):
    return (f"<Timesheet><Job>{job.job_number}</Job><TaskUUID>{task.uuid}</TaskUUID><StaffUUID>{staff.uuid}</StaffUUID>"
            f"<Date>{day}</Date>{extra}<Note>{note}</Note></Timesheet>")


def test_time_add_appears_in_list_and_updates_actual_minutes(api):
    job = open_job(api)
    task, staff = job.tasks[0], job.assigned[0]
    before = task.actual_minutes
    root = api.ok(api.send("POST", "time.api/add", timesheet(job, task, staff)))
    time = root.find("Time")
    uuid = time.findtext("UUID")
    assert uuid and uuid not in {e.uuid for e in api.tenant.times.values() if e.uuid != uuid} | {""}
    assert time.findtext("Job/ID") == job.job_number and time.findtext("Task/UUID") == task.uuid
    assert time.findtext("Staff/UUID") == staff.uuid and time.findtext("Date") == "2026-11-20T00:00:00"
    assert time.findtext("Minutes") == "90" and time.findtext("Note") == "Asset register & more"
    assert time.find("Start") is None
    listed = api.xml("time.api/list", **{"from": "20261120", "to": "20261120"})
    assert uuid in [e.text for e in listed.iterfind("Times/Time/UUID")]
    assert task.actual_minutes == before + 90
    got = api.xml(f"job.api/get/{job.job_number}")
    actual = next(t for t in got.iterfind("Job/Tasks/Task") if t.findtext("UUID") == task.uuid)
    assert actual.findtext("ActualMinutes") == str(before + 90)


def test_time_add_with_start_end_negative_minutes_and_task_type(api):
    job = open_job(api)
    task, staff = job.tasks[0], job.assigned[0]
    ranged = api.ok(api.send("POST", "time.api/add", timesheet(job, task, staff, extra="<Start>09:00</Start><End>10:30</End>")))
    assert [ranged.findtext(f"Time/{t}") for t in ("Minutes", "Start", "End")] == ["90", "09:00", "10:30"]
    negative = api.ok(api.send("POST", "time.api/add", timesheet(job, task, staff, extra="<Minutes>-30</Minutes>")))
    assert negative.findtext("Time/Minutes") == "-30"
    # The task-list UUID is accepted when the type appears once on the job; the answer names the task on the job.
    if sum(t.task_type is task.task_type for t in job.tasks) == 1:
        typed = timesheet(job, task, staff).replace(task.uuid, task.task_type.uuid)
        assert api.ok(api.send("POST", "time.api/add", typed)).findtext("Time/Task/UUID") == task.uuid


@pytest.mark.parametrize("change, status", [
    (lambda b: b.replace("<Date>20261120</Date>", "<Date>2026-11-20</Date>"), 400),
    (lambda b: b.replace("<Minutes>90</Minutes>", ""), 400),
    (lambda b: b.replace("<Minutes>90</Minutes>", "<Start>10:00</Start><End>09:00</End>"), 500),
    (lambda b: b.replace("<Minutes>90</Minutes>", "<Start>10:00</Start>"), 400),
    (lambda b: b.replace("<Minutes>90</Minutes>", "<Minutes>ninety</Minutes>"), 400),
    (lambda b: b.replace("<Timesheet>", "<Time>").replace("</Timesheet>", "</Time>"), 400),
    (lambda b: b[:-5], 400),
    (lambda b: '<?xml version="1.0"?><!DOCTYPE Timesheet [<!ENTITY x "y">]>' + b.replace("<Note>", "<Note>&x;"), 400),
    (lambda b: "<Wrapper>" + b + "</Wrapper>", 400),
    (lambda b: "", 400),
])
def test_bad_time_bodies_are_refused_without_change(api, change, status):
    job = open_job(api)
    count = len(api.tenant.times)
    api.error(api.send("POST", "time.api/add", change(timesheet(job, job.tasks[0], job.assigned[0]))), status)
    assert len(api.tenant.times) == count


def test_time_add_unknown_references_are_200_errors(api):
    job = open_job(api)
    task, staff = job.tasks[0], job.assigned[0]
    body = timesheet(job, task, staff)
    assert api.error(api.send("POST", "time.api/add", body.replace(job.job_number, "J999999")), 200) == \
        "Unable to find job J999999"
    api.error(api.send("POST", "time.api/add", body.replace(staff.uuid, UNKNOWN)), 200)
    api.error(api.send("POST", "time.api/add", body.replace(task.uuid, UNKNOWN)), 200)
    other = next(j for j in api.tenant.jobs.values() if j is not job and j.tasks)
    api.error(api.send("POST", "time.api/add", body.replace(task.uuid, other.tasks[0].uuid)), 500)


def test_time_update_and_delete(api):
    entry = next(e for e in api.tenant.times.values() if e.start is not None)
    job, staff = entry.job, entry.staff
    body = (f"<Timesheet><UUID>{entry.uuid}</UUID><Job>{job.job_number}</Job><TaskUUID>{entry.task.uuid}</TaskUUID>"
            f"<StaffUUID>{staff.uuid}</StaffUUID><Date>20261101</Date><Minutes>45</Minutes><Note>Edited</Note></Timesheet>")
    root = api.ok(api.send("PUT", "time.api/update", body))
    assert root.findtext("Time/UUID") == entry.uuid and root.findtext("Time/Minutes") == "45"
    assert root.find("Time/Start") is None  # Minutes replaced the Start/End range
    assert entry.date == date(2026, 11, 1) and entry.note == "Edited"
    assert entry.uuid in [e.text for e in api.xml("time.api/list", **{"from": "20261101", "to": "20261101"})
                          .iterfind("Times/Time/UUID")]
    deleted = api.send("DELETE", f"time.api/delete/{entry.uuid}")
    assert api.ok(deleted).find("Time") is None
    assert entry.uuid not in api.tenant.times
    assert entry.uuid not in [e.text for e in api.xml("time.api/list", **{"from": "20261101", "to": "20261101"})
                              .iterfind("Times/Time/UUID")]
    api.error(api.get(f"time.api/get/{entry.uuid}"), 200)
    api.error(api.send("DELETE", f"time.api/delete/{entry.uuid}"), 200)  # "not found" on a repeat
    api.error(api.send("PUT", "time.api/update", body), 200)


def test_job_update_state_assign_and_delete(api):
    tenant = api.tenant
    job = open_job(api)
    body = (f"<Job><ID>{job.job_number}</ID><Name>FY27 Accounts &amp; Tax</Name><Description>Desc</Description>"
            "<StartDate>20261201</StartDate><DueDate>20270331</DueDate><Budget>1800</Budget></Job>")
    root = api.ok(api.send("PUT", "job.api/update", body))
    assert root.findtext("Job/Name") == "FY27 Accounts & Tax" and root.findtext("Job/Budget") == "1800.00"
    assert root.findtext("Job/DueDate") == "2027-03-31T00:00:00" and root.find("Job/Tasks") is not None

    state = api.ok(api.send("PUT", "job.api/state", f"<Job><ID>{job.job_number}</ID><State>INPROGRESS</State></Job>"))
    assert state.findtext("Job/State") == tenant.state_name("INPROGRESS") == "In Progress"
    api.error(api.send("PUT", "job.api/state", f"<Job><ID>{job.job_number}</ID><State>In Progress</State></Job>"), 500)
    done = api.ok(api.send("PUT", "job.api/state",
                           f"<Job><ID>{job.job_number}</ID><UUID>{job.uuid}</UUID><State>COMPLETED</State></Job>"))
    assert done.findtext("Job/State") == "Completed" and done.findtext("Job/CompletedDate") == "2026-11-23T00:00:00"
    assert job.job_number not in [e.text for e in api.xml("job.api/current").iterfind("Jobs/Job/ID")]
    reopened = api.ok(api.send("PUT", "job.api/state", f"<Job><ID>{job.job_number}</ID><State>PLANNED</State></Job>"))
    assert reopened.find("Job/CompletedDate") is None

    staff = [s for s in tenant.staff.values() if s not in job.assigned][:1] or list(tenant.staff.values())[:1]
    manager = list(tenant.staff.values())[-1]
    assign = (f'<Job><ID>{job.job_number}</ID><add uuid="{staff[0].uuid}"/><add-manager uuid="{manager.uuid}"/>'
              f'<add uuid="{staff[0].uuid}" task-uuid="{job.tasks[0].uuid}"/><remove-partner/></Job>')
    root = api.ok(api.send("PUT", "job.api/assign", assign))
    assert staff[0].uuid in [e.text for e in root.iterfind("Job/Assigned/Staff/UUID")]
    assert root.findtext("Job/Manager/UUID") == manager.uuid and root.find("Job/Partner") is None
    assert [e.text for e in root.find("Job/Tasks/Task").iterfind("Assigned/Staff/UUID")] == [staff[0].uuid]
    api.error(api.send("PUT", "job.api/assign", f'<Job><ID>{job.job_number}</ID><add uuid="{UNKNOWN}"/></Job>'), 200)

    times = list(job.times)
    api.ok(api.send("POST", "job.api/delete", f"<Job><ID>{job.job_number}</ID></Job>"))
    api.error(api.get(f"job.api/get/{job.job_number}"), 200)
    assert all(e.uuid not in tenant.times for e in times)
    api.error(api.send("POST", "job.api/delete", f"<Job><ID>{job.job_number}</ID></Job>"), 200)


def test_job_add_with_custom_number(api):
    client = next(c for c in api.tenant.clients.values() if not c.is_deleted)
    body = (f"<Job><Name>Audit FY27</Name><Description /><ClientUUID>{client.uuid}</ClientUUID>"
            "<StartDate>20261201</StartDate><DueDate>20270301</DueDate><ID>AUD27-900</ID></Job>")
    root = api.ok(api.send("POST", "job.api/add", body))
    assert root.findtext("Job/ID") == "AUD27-900" and root.findtext("Job/Client/UUID") == client.uuid
    assert root.findtext("Job/State") == "Planned"
    api.error(api.send("POST", "job.api/add", body), 500)  # the number is taken
    plain = body.replace("<ID>AUD27-900</ID>", "")
    numbered = api.ok(api.send("POST", "job.api/add", plain)).findtext("Job/ID")
    assert numbered.startswith(api.tenant.job_prefix)


def test_job_task_add_update_complete_reopen(api):
    job = open_job(api)
    task_type = list(api.tenant.task_types.values())[-1]
    body = (f"<Task><Job>{job.job_number}</Job><TaskUUID>{task_type.uuid}</TaskUUID><EstimatedMinutes>120</EstimatedMinutes>"
            "<Label>Second pass</Label><Description>Check &amp; file</Description><StartDate>20261201</StartDate></Task>")
    root = api.ok(api.send("POST", "job.api/task", body))
    new_uuid = root.findtext("ID")
    assert new_uuid and new_uuid in api.tenant.job_tasks
    got = api.xml(f"job.api/get/{job.job_number}")
    task = next(t for t in got.iterfind("Job/Tasks/Task") if t.findtext("UUID") == new_uuid)
    assert task.findtext("TaskUUID") == task_type.uuid and task.findtext("Label") == "Second pass"
    assert task.findtext("StartDate") == "2026-12-01T00:00:00" and task.find("DueDate") is None
    api.error(api.send("POST", "job.api/task", body.replace("<EstimatedMinutes>120</EstimatedMinutes>", "")), 400)
    api.error(api.send("POST", "job.api/task", body.replace(task_type.uuid, UNKNOWN)), 200)

    update = f"<Task><UUID>{new_uuid}</UUID><EstimatedMinutes>90</EstimatedMinutes><DueDate>20261215</DueDate></Task>"
    assert api.ok(api.send("PUT", "job.api/task", update)).findtext("ID") == new_uuid
    model = api.tenant.job_tasks[new_uuid]
    assert model.estimated_minutes == 90 and model.due_date == date(2026, 12, 15) and model.label == "Second pass"
    api.ok(api.send("PUT", "job.api/task", update.replace("UUID>", "uuid>")))
    api.error(api.send("PUT", "job.api/task", update.replace(new_uuid, UNKNOWN)), 200)

    api.ok(api.send("PUT", f"job.api/task/{new_uuid}/complete"))
    assert model.completed is True
    api.ok(api.send("PUT", f"job.api/task/{new_uuid}/reopen"))
    assert model.completed is False
    api.error(api.send("PUT", f"job.api/task/{UNKNOWN}/complete"), 200)


def test_client_add_and_update(api, clock):
    staff = next(iter(api.tenant.staff.values()))
    body = ("<Client><Name>Harbour Joinery &amp; Sons Ltd</Name><Email>hi@harbour.example</Email>"
            f"<WebSite>https://harbour.example</WebSite><IsProspect>No</IsProspect><AccountManagerUUID>{staff.uuid}"
            "</AccountManagerUUID><TaxNumber>123456789</TaxNumber><Contacts><Contact><Name>Tom Hale</Name>"
            "<IsPrimary>Yes</IsPrimary><Email>tom@harbour.example</Email></Contact></Contacts></Client>")
    root = api.ok(api.send("POST", "client.api/add", body))
    client = root.find("Client")
    uuid = client.findtext("UUID")
    assert client.findtext("Name") == "Harbour Joinery & Sons Ltd"
    assert client.findtext("Website") == "https://harbour.example" and client.find("WebSite") is None
    assert client.findtext("TaxNumber") == "******789"
    assert client.findtext("AccountManager/UUID") == staff.uuid
    assert client.findtext("Contacts/Contact/IsPrimary") == "Yes" and client.findtext("Contacts/Contact/UUID")
    assert [c.text for c in api.xml("client.api/search", query="harbour joinery").iterfind("Clients/Client/UUID")] == [uuid]
    assert api.error(api.send("POST", "client.api/add", body), 409).startswith("A client named")
    api.error(api.send("POST", "client.api/add", "<Client><Email>x</Email></Client>"), 400)

    clock.advance(120)
    api.renew()
    since = clock.now().strftime("%Y-%m-%dT%H:%M:%S")
    update = f"<Client><UUID>{uuid}</UUID><Phone>03 548 0000</Phone><WebSite /></Client>"
    updated = api.ok(api.send("PUT", "client.api/update", update)).find("Client")
    assert updated.findtext("Phone") == "03 548 0000" and updated.find("Website").text is None
    assert updated.findtext("Email") == "hi@harbour.example"  # omitted elements are kept
    assert [c.text for c in api.xml("client.api/list", modifiedsince=since).iterfind("Clients/Client/UUID")] == [uuid]
    other = next(c for c in api.tenant.clients.values() if not c.is_deleted and c.uuid != uuid)
    api.error(api.send("PUT", "client.api/update", f"<Client><UUID>{uuid}</UUID><Name>{other.name.replace('&', '&amp;')}"
                                                   "</Name></Client>"), 409)
    api.error(api.send("PUT", "client.api/update", f"<Client><UUID>{UNKNOWN}</UUID></Client>"), 200)


def test_write_bodies_parse_safely(api):
    job = open_job(api)
    external = ('<?xml version="1.0"?><!DOCTYPE Job [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                f"<Job><ID>{job.job_number}</ID><Name>&x;</Name></Job>")
    assert "DOCTYPE" in api.error(api.send("PUT", "job.api/update", external), 400)
    assert "root" not in job.name
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
              f"<Job><ID>{job.job_number}</ID><Name>&lol2;</Name></Job>")
    api.error(api.send("PUT", "job.api/update", laughs), 400)
    assert "lol" not in job.name
