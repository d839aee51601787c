"""The sandbox's XML against the documented examples (xpm-api.md §6), element by element.

For each entity the documented example is embedded verbatim. The sandbox may carry extra documented
XPM elements, but every documented element must be there, nested the same way and in the same
relative order, and documented booleans must use the same vocabulary (Yes/No vs true/false).
"""

from __future__ import annotations

import re

from lxml import etree

DOC_CLIENT = """
<Client><UUID>362de1a5-b4a9-40e9-a7b5-6df4db2726cb</UUID><Name>Harbour Joinery Ltd</Name>
  <Website /><IsArchived>No</IsArchived><IsDeleted>No</IsDeleted>
  <Contacts><Contact><UUID>684de074-9c13-4d8d-9ad8-706b715e8cf2</UUID><Name>Tom Hale</Name>
    <IsDeleted>No</IsDeleted><IsPrimary>Yes</IsPrimary><Position /></Contact></Contacts></Client>
"""
DOC_JOB = """
<Response><Status>OK</Status><WebUrl>https://app.practicemanager.xero.com/job/…</WebUrl>
  <Job><ID>J001042</ID><UUID>ba5f61da-bded-4e50-8e30-c0e565e91a5e</UUID><Name>FY26 Accounts</Name>
    <Description /><State>In Progress</State><Budget>1800.00</Budget>
    <StartDate>2026-07-01T00:00:00</StartDate><DueDate>2026-09-30T00:00:00</DueDate>
    <Client><UUID>362de1a5-b4a9-40e9-a7b5-6df4db2726cb</UUID><Name>Harbour Joinery Ltd</Name></Client>
    <Tasks><Task>
      <UUID>301e019f-c41e-45cf-aa2f-10569900b82c</UUID>         <!-- this task on this job -->
      <TaskUUID>d135c7d7-3efd-4141-968a-3b02bd7fff03</TaskUUID> <!-- its type in task.api/list -->
      <Name>Year-end review</Name><Description /><EstimatedMinutes>240</EstimatedMinutes>
      <ActualMinutes>90</ActualMinutes><Completed>false</Completed><Billable>true</Billable><Folder />
    </Task></Tasks></Job></Response>
"""
DOC_TIME = """
<Time><UUID>f30c8127-b101-455c-882e-92d856bc5576</UUID><Job><ID>J001042</ID><Name>FY26 Accounts</Name></Job>
  <Task><UUID>301e019f-c41e-45cf-aa2f-10569900b82c</UUID><Name>Year-end review</Name></Task>
  <Staff><UUID>d47b74e4-cc6c-41c5-b880-e60ac2f9e79c</UUID><Name>Ana Reyes</Name></Staff>
  <Date>2026-08-14T00:00:00</Date><Minutes>90</Minutes><Note>Asset register</Note><Billable>true</Billable>
  <Start>09:00</Start><End>10:30</End><InvoiceTaskUUID /></Time>
"""
DOC_STAFF = ("<Staff><UUID>60de7bad-f207-40b3-af63-478159fdef1a</UUID><Name>Ben Okafor</Name>"
             "<Email>ben@firm.example</Email><PayrollCode /></Staff>")
DOC_GROUP = ("<Group><UUID>4067eb2b-19c5-4502-92bb-6c6b55093025</UUID><Name>Hale Family</Name>"
             "<Taxable>No</Taxable></Group>")
DOC_TASK = "<Task><UUID>d135c7d7-3efd-4141-968a-3b02bd7fff03</UUID><Name>Year-end review</Name><Description /></Task>"

VOCABULARIES = ({"Yes", "No"}, {"true", "false"})


def parse(text: str | bytes) -> etree._Element:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return etree.fromstring(text, etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True))


def assert_shape(documented: etree._Element, got: etree._Element, where: str = "") -> None:
    where = f"{where}/{documented.tag}"
    assert got.tag == documented.tag, f"{where}: got <{got.tag}>"
    got_children = [c for c in got if isinstance(c.tag, str)]
    got_tags = [c.tag for c in got_children]
    position = 0
    for child in (c for c in documented if isinstance(c.tag, str)):
        assert child.tag in got_tags[position:], (
            f"{where}: <{child.tag}> missing or out of order; sandbox order {got_tags}")
        position = got_tags.index(child.tag, position)
        assert_shape(child, got_children[position], where)
        position += 1
    if len(documented) == 0:
        for vocabulary in VOCABULARIES:
            if (documented.text or "") in vocabulary:
                assert (got.text or "") in vocabulary, f"{where}: {got.text!r} is not one of {sorted(vocabulary)}"


def test_client_with_contact(api):
    client = next(c for c in api.tenant.clients.values() if c.contacts)
    listed = api.xml("client.api/list")
    element = next(e for e in listed.iterfind("Clients/Client") if e.findtext("UUID") == client.uuid)
    assert_shape(parse(DOC_CLIENT), element)
    assert_shape(parse(DOC_CLIENT), api.xml(f"client.api/get/{client.uuid}").find("Client"))


def test_job_with_tasks_from_get(api):
    job = next(j for j in api.tenant.jobs.values() if j.tasks)
    assert_shape(parse(DOC_JOB), api.xml(f"job.api/get/{job.job_number}"))


def test_time_entered_as_a_range(api):
    entry = next(e for e in api.tenant.times.values() if e.start is not None)
    assert_shape(parse(DOC_TIME), api.xml(f"time.api/get/{entry.uuid}").find("Time"))
    listed = api.xml("time.api/list", **{"from": entry.date.strftime("%Y%m%d"), "to": entry.date.strftime("%Y%m%d")})
    assert_shape(parse(DOC_TIME), next(t for t in listed.iterfind("Times/Time") if t.findtext("UUID") == entry.uuid))


def test_staff_group_and_task_list_item(api):
    assert_shape(parse(DOC_STAFF), api.xml("staff.api/list").find("StaffList/Staff"))
    assert_shape(parse(DOC_GROUP), api.xml("clientgroup.api/list").find("Groups/Group"))
    group = next(iter(api.tenant.groups.values()))
    assert_shape(parse(DOC_GROUP), api.xml(f"clientgroup.api/get/{group.uuid}").find("Group"))
    assert_shape(parse(DOC_TASK), api.xml("task.api/list").find("TaskList/Task"))


def test_the_shape_check_catches_a_wrong_order():
    swapped = DOC_STAFF.replace("<Name>Ben Okafor</Name><Email>ben@firm.example</Email>",
                                "<Email>ben@firm.example</Email><Name>Ben Okafor</Name>")
    try:
        assert_shape(parse(DOC_STAFF), parse(swapped))
    except AssertionError:
        return
    raise AssertionError("order check did not fire")


def test_envelope_empties_omitted_blocks_and_one_item_lists(api):
    response = api.get("task.api/list")
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    raw = response.text
    assert raw.startswith('<Response api-method="List"><Status>OK</Status><TaskList>')
    assert re.search(r"<Description />", raw)  # empty values are self-closing
    tenant = api.tenant
    open_job = next(j for j in tenant.jobs.values() if j.completed_date is None and j.contact is None)
    job_xml = api.get(f"job.api/get/{open_job.job_number}").text
    assert "<CompletedDate" not in job_xml and "<Contact>" not in job_xml
    undated = next(t for t in open_job.tasks if t.start_date is None) if any(
        t.start_date is None for t in open_job.tasks) else None
    if undated is not None:
        task_xml = re.search(rf"<Task><UUID>{undated.uuid}</UUID>.*?</Task>", job_xml).group(0)
        assert "<StartDate>" not in task_xml and "<DueDate>" not in task_xml
    single = next(c for c in tenant.clients.values() if len(c.contacts) == 1)
    got = api.xml(f"client.api/get/{single.uuid}")
    assert len(got.findall("Client/Contacts/Contact")) == 1  # a one-item list keeps its wrapper
    empty = api.get("time.api/list", **{"from": "20000101", "to": "20000102"}).text
    assert empty == '<Response api-method="List"><Status>OK</Status><Times /></Response>'


def test_booleans(api):
    job = next(j for j in api.tenant.jobs.values() if j.tasks)
    got = api.xml(f"job.api/get/{job.job_number}")
    assert {t.text for t in got.iterfind("Job/Tasks/Task/Completed")} <= {"true", "false"}
    clients = api.xml("client.api/list")
    for tag in ("IsArchived", "IsDeleted", "IsProspect", "Contacts/Contact/IsPrimary", "Contacts/Contact/IsDeleted"):
        assert {e.text for e in clients.iterfind(f"Clients/Client/{tag}")} <= {"Yes", "No"}, tag
    times = api.xml("time.api/list", **{"from": "20260101", "to": "20260201"})
    assert {e.text for e in times.iterfind("Times/Time/Billable")} == {"true", "false"}


def test_error_envelope(api):
    answer = api.get("job.api/get/J999999")
    assert answer.text == ("<Response><Status>ERROR</Status><ErrorDescription>Unable to find job J999999"
                           "</ErrorDescription></Response>")
