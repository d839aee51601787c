"""Fault injection: every kind, matching by path/method/tenant and call number, and the log marks."""

from __future__ import annotations

import math
import time

import httpx
import pytest
from lxml import etree

from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.sandbox import SandboxServer
from xpm_pipeline_tests.sandbox.conftest import Api, http, make_config
from xpm_pipeline_tests.sandbox.test_identity import refresh
from xpm_pipeline_tests.sandbox.test_writes import open_job, timesheet

SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def add_fault(api, **spec) -> str:
    answer = api.admin("POST", "faults", spec)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def add_time_body(api) -> str:
    job = open_job(api)
    return timesheet(job, job.tasks[0], job.assigned[0])


def last(api, path_end: str) -> dict:
    return [e for e in api.sb.request_log if e["path"].endswith(path_end)][-1]


@pytest.mark.parametrize("mode, error", [("close", httpx.RemoteProtocolError), ("reset", httpx.TransportError)])
def test_drop_after_commit_applies_the_write(api, mode, error):
    count = len(api.tenant.times)
    add_fault(api, path="time.api/add", kind="drop_after_commit", mode=mode)
    with pytest.raises(error):
        api.send("POST", "time.api/add", add_time_body(api))
    assert len(api.tenant.times) == count + 1  # committed, answer lost: the entry is "in doubt"
    entry = last(api, "time.api/add")
    assert entry["fault"] == "drop_after_commit" and entry["status"] is None and entry["counted"]
    api.ok(api.send("POST", "time.api/add", add_time_body(api)))  # count=1: the next call is normal


def test_drop_after_commit_hang_times_the_client_out(api):
    count = len(api.tenant.times)
    add_fault(api, path="time.api/add", kind="drop_after_commit", mode="hang", seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        api.http.post("time.api/add", content=add_time_body(api), timeout=0.3)
    assert len(api.tenant.times) == count + 1


def test_reset_leaves_state_unchanged(api):
    count = len(api.tenant.times)
    add_fault(api, path="time.api/add", kind="reset")
    with pytest.raises(httpx.TransportError):
        api.send("POST", "time.api/add", add_time_body(api))
    assert len(api.tenant.times) == count
    entry = last(api, "time.api/add")
    assert entry["fault"] == "reset" and not entry["counted"]


def test_latency(api):
    add_fault(api, path="staff.api/list", kind="latency", seconds=0.4)
    started = time.monotonic()
    api.xml("staff.api/list")
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    api.xml("staff.api/list")
    assert time.monotonic() - started < 0.4


@pytest.mark.parametrize("status", [500, 503])
def test_status_fault_does_not_apply_the_write(api, status):
    count = len(api.tenant.times)
    add_fault(api, path="time.api/add", kind="status", status=status, message="Service unavailable")
    assert api.error(api.send("POST", "time.api/add", add_time_body(api)), status) == "Service unavailable"
    assert len(api.tenant.times) == count
    assert last(api, "time.api/add")["fault"] == "status"


def test_error_200(api):
    add_fault(api, path="job.api/current", kind="error_200", message="Something odd")
    answer = api.get("job.api/current")
    assert api.error(answer, 200) == "Something odd"
    assert answer.headers["x-minlimit-remaining"]


def test_truncated_body_and_connection(api):
    full = api.get("staff.api/list").content
    add_fault(api, path="staff.api/list", kind="truncated")
    cut = api.get("staff.api/list")
    assert cut.status_code == 200 and 0 < len(cut.content) < len(full) and full.startswith(cut.content)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(cut.content, SAFE)
    add_fault(api, path="staff.api/list", kind="truncated", mode="connection", fraction=0.3)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("staff.api/list")


def test_malformed(api):
    add_fault(api, path="task.api/list", kind="malformed")
    answer = api.get("task.api/list")
    assert answer.status_code == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(answer.content, SAFE)


@pytest.mark.parametrize("entity", ["internal", "external"])
def test_doctype(api, entity):
    add_fault(api, path="task.api/list", kind="doctype", entity=entity)
    answer = api.get("task.api/list")
    assert b"<!DOCTYPE" in answer.content and b"&sandbox;" in answer.content
    root = etree.fromstring(answer.content, SAFE)  # a safe parser does not expand it
    assert root.find("Injected").text is None
    assert root.getroottree().docinfo.doctype


def test_oversized(api):
    add_fault(api, path="staff.api/list", kind="oversized", bytes=3 * 1024 * 1024)
    answer = api.get("staff.api/list")
    assert len(answer.content) > 3 * 1024 * 1024
    root = etree.fromstring(answer.content, etree.XMLParser(huge_tree=True))
    assert root.findtext("Status") == "OK" and root.find("StaffList/Staff") is not None
    assert last(api, "staff.api/list")["bytes"] == len(answer.content)


def test_rate_limit_fault_is_not_counted(api):
    add_fault(api, path="staff.api/list", kind="rate_limit", retry_after=17, problem="day")
    answer = api.get("staff.api/list")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "17" and answer.headers["x-rate-limit-problem"] == "day"
    entry = last(api, "staff.api/list")
    assert entry["fault"] == "rate_limit" and not entry["counted"]


def test_expired_token_fault(api):
    add_fault(api, path="staff.api/list", kind="expired_token")
    answer = api.get("staff.api/list")
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]
    api.xml("staff.api/list")


def test_invalid_grant_fault_leaves_the_token_usable(sandbox):
    tokens = sandbox.issue_token(sandbox.tenant_ids[0])
    sandbox.add_fault(path="connect/token", kind="invalid_grant")
    answer = refresh(sandbox, tokens["refresh_token"])
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert refresh(sandbox, tokens["refresh_token"]).status_code == 200


def test_lost_refresh_commits_the_rotation(sandbox, clock):
    tokens = sandbox.issue_token(sandbox.tenant_ids[0])
    sandbox.add_fault(path="connect/token", kind="lost_refresh")
    issued = len(sandbox.identity.refresh_tokens)
    with pytest.raises(httpx.RemoteProtocolError):
        refresh(sandbox, tokens["refresh_token"])
    assert len(sandbox.identity.refresh_tokens) == issued + 1  # a new token exists that nobody received
    entry = [e for e in sandbox.request_log if e["path"] == "/connect/token"][-1]
    assert entry["fault"] == "lost_refresh" and entry["status"] is None
    clock.advance(10 * 60)
    assert refresh(sandbox, tokens["refresh_token"]).status_code == 200  # retry within the grace period


def test_after_count_method_tenant_and_glob(api):
    add_fault(api, path="*.api/list", kind="status", status=503, after=2, count=2, method="GET", tenant=api.tenant_id)
    statuses = [api.get("staff.api/list").status_code for _ in range(5)]
    assert statuses == [200, 200, 503, 503, 200]
    faults = api.admin("GET", "faults").json()
    assert faults[0]["seen"] == 4 and faults[0]["fired"] == 2 and faults[0]["remaining"] == 0
    other = api.admin("POST", "faults", {"path": "staff.api", "kind": "error_200", "tenant": api.sb.tenant_ids[1]})
    api.xml("staff.api/list")  # another tenant's fault does not fire here
    assert api.admin("DELETE", f"faults/{other.json()['id']}").status_code == 200
    add_fault(api, path="staff.api/list", kind="error_200", method="POST")
    api.xml("staff.api/list")
    assert api.admin("DELETE", "faults").json() == {"cleared": 2}
    assert api.admin("GET", "faults").json() == []


@pytest.mark.parametrize("spec", [
    {"path": "x", "kind": "nope"}, {"kind": "reset"}, {"path": "x", "kind": "latency", "seconds": -1},
    {"path": "x", "kind": "status", "status": 200}, {"path": "x", "kind": "reset", "count": 0},
    {"path": "x", "kind": "reset", "colour": "red"}, {"path": "x", "kind": "rate_limit", "problem": "hourly"},
])
def test_bad_fault_specs(api, spec):
    assert api.admin("POST", "faults", spec).status_code == 400


def test_identity_faults_mangle_and_refuse(sandbox):
    tokens = sandbox.issue_token(sandbox.tenant_ids[0])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    sandbox.add_fault(path="connections", kind="truncated", method="GET")
    cut = http.get(sandbox.base_url + "/connections", headers=bearer)
    with pytest.raises(ValueError):
        cut.json()
    sandbox.add_fault(path="connect/token", kind="status", status=503)
    down = refresh(sandbox, tokens["refresh_token"])
    assert down.status_code == 503 and down.json()["error"] == "temporarily_unavailable"
    sandbox.add_fault(path="connect/token", kind="reset")
    with pytest.raises(httpx.TransportError):
        refresh(sandbox, tokens["refresh_token"])
    assert refresh(sandbox, tokens["refresh_token"]).status_code == 200
    assert [e["fault"] for e in sandbox.request_log] == ["truncated", "status", "reset", None]


# -- well-formed lies: HTTP 200, <Status>OK</Status>, and a list that says something false ----------------

YEAR = {"from": "20251124", "to": "20261123"}  # the year up to the sandbox's today (conftest START)
LISTS = [  # every list call the pipeline reads, with the registry entity it lists
    ("client.api/list", {"detailed": "true"}, ENTITIES["client"]),
    ("clientgroup.api/list", {}, ENTITIES["client_group"]),
    ("staff.api/list", {}, ENTITIES["staff"]),
    ("task.api/list", {}, ENTITIES["task"]),
    ("job.api/current", {"detailed": "true"}, ENTITIES["job"]),
    ("job.api/list", {**YEAR, "detailed": "true"}, ENTITIES["job"]),
    ("time.api/list", {"from": "20261101", "to": "20261130"}, ENTITIES["timesheet"]),
]
LIST_IDS = [path for path, _, _ in LISTS]


def uuids(root, entity) -> list[str]:
    """The UUIDs of the list's items, in order (None: the list element is absent)."""
    wrapper = root.find(entity.list_element)
    return None if wrapper is None else [item.findtext("UUID") for item in wrapper.iterchildren(entity.element)]


def honest_and_lie(api, path, params, entity, kind, **spec) -> tuple[list[str], list[str] | None, etree._Element]:
    """The honest list, then the lie (parsed raw), then checks the next call is honest again."""
    honest = uuids(api.xml(path, **params), entity)
    assert honest, f"{path} lists nothing: the lie would prove nothing"
    add_fault(api, path=path, kind=kind, **spec)
    lie = api.xml(path, **params)  # HTTP 200, text/xml, <Status>OK</Status>: well-formed
    entry = last(api, path)
    assert entry["fault"] == kind and entry["counted"]  # an admitted-stage fault: a real, counted call
    assert uuids(api.xml(path, **params), entity) == honest  # count=1: the next call is honest
    return honest, uuids(lie, entity), lie


@pytest.mark.parametrize("path, params, entity", LISTS, ids=LIST_IDS)
def test_lie_missing_list(api, path, params, entity):
    _, lie, root = honest_and_lie(api, path, params, entity, "lie_missing_list")
    assert lie is None and [child.tag for child in root] == ["Status"]


@pytest.mark.parametrize("path, params, entity", LISTS, ids=LIST_IDS)
def test_lie_empty_list(api, path, params, entity):
    _, lie, root = honest_and_lie(api, path, params, entity, "lie_empty_list")
    assert lie == [] and len(root.find(entity.list_element)) == 0


@pytest.mark.parametrize("path, params, entity", LISTS, ids=LIST_IDS)
def test_lie_cut_keeps_the_first_tenth_rounded_up(api, path, params, entity):
    honest, lie, _ = honest_and_lie(api, path, params, entity, "lie_cut")
    assert lie == honest[: math.ceil(len(honest) / 10)]


def test_lie_cut_fraction(api):
    honest, lie, _ = honest_and_lie(api, *LISTS[-1], "lie_cut", fraction=0.5)
    assert lie == honest[: math.ceil(len(honest) / 2)] and len(lie) < len(honest)


@pytest.mark.parametrize("path, params, entity", LISTS, ids=LIST_IDS)
def test_lie_duplicate(api, path, params, entity):
    honest, lie, _ = honest_and_lie(api, path, params, entity, "lie_duplicate")
    assert lie == [uuid for uuid in honest for _ in range(2)]


@pytest.mark.parametrize("path, params, entity", LISTS, ids=LIST_IDS)
def test_lie_other_tenant(api, path, params, entity):
    other = Api(api.sb, api.sb.tenant_ids[1])
    theirs = uuids(other.xml(path, **params), entity)
    honest, lie, _ = honest_and_lie(api, path, params, entity, "lie_other_tenant")
    assert lie == theirs and lie and not set(lie) & set(honest)


def test_lie_other_tenant_source_and_a_tenant_without_data(clock):
    with SandboxServer(make_config(clock=clock, tenants=3)) as sb:
        api = Api(sb)
        _, second, third = sb.tenant_ids
        path, params, entity = LISTS[2]
        honest, lie, _ = honest_and_lie(api, path, params, entity, "lie_other_tenant", source_tenant=third)
        assert lie == uuids(Api(sb, third).xml(path, **params), entity)
        # Jobs created today: only this tenant has one, so no other tenant has data: the first other
        # tenant's (empty) list is the lie.
        client = next(iter(api.tenant.clients))
        made = api.admin("POST", f"tenants/{api.tenant_id}/jobs",
                         {"name": "Made today", "client_uuid": client})
        assert made.status_code == 200, made.text
        today = {"from": "20261123", "to": "20261123"}
        for tenant in (second, third):
            assert uuids(Api(sb, tenant).xml("job.api/list", **today), ENTITIES["job"]) == []
        honest, lie, root = honest_and_lie(api, "job.api/list", today, ENTITIES["job"], "lie_other_tenant")
        assert honest == [made.json()["uuid"]] and lie == []


def test_lie_after_and_count(api):
    path, params, entity = LISTS[2]
    honest = uuids(api.xml(path, **params), entity)
    add_fault(api, path="staff.api/*", kind="lie_duplicate", after=1, count=2, method="GET", tenant=api.tenant_id)
    answers = [uuids(api.xml(path, **params), entity) for _ in range(4)]
    doubled = [u for u in honest for _ in range(2)]
    assert answers == [honest, doubled, doubled, honest]
    assert [e["fault"] for e in api.sb.request_log[-4:]] == [None, "lie_duplicate", "lie_duplicate", None]
    assert api.admin("GET", "faults").json()[0]["remaining"] == 0


def test_lie_about_an_error_answer_sends_the_error(api):
    add_fault(api, path="job.api/list", kind="lie_missing_list")
    assert "from" in api.error(api.get("job.api/list"), 400)  # the real ERROR, untouched; the fault is spent
    assert last(api, "job.api/list")["fault"] == "lie_missing_list"
    assert uuids(api.xml("job.api/list", **YEAR), ENTITIES["job"])


def group_get(api) -> tuple[str, etree._Element]:
    """A group with at least two members, and its honest get answer."""
    for group in api.tenant.groups.values():
        if len(group.members) >= 2:
            path = f"clientgroup.api/get/{group.uuid}"
            return path, api.xml(path)
    raise AssertionError("no group with two members in the sandbox")


def members(root) -> list[str] | None:
    group = root.find("Group")
    return None if group is None else [c.findtext("UUID") for c in group.iterfind("Clients/Client")]


@pytest.mark.parametrize("kind, expect", [
    ("lie_missing_list", lambda honest: None),
    ("lie_empty_list", lambda honest: []),
    ("lie_cut", lambda honest: honest[:1]),
    ("lie_duplicate", lambda honest: [u for u in honest for _ in range(2)]),
])
def test_lies_on_a_group_get_are_about_its_members(api, kind, expect):
    path, honest = group_get(api)
    add_fault(api, path="clientgroup.api/get/*", kind=kind)
    lie = api.xml(path)
    assert members(lie) == expect(members(honest))
    if lie.find("Group") is not None:
        assert lie.findtext("Group/UUID") == honest.findtext("Group/UUID")
    assert members(api.xml(path)) == members(honest)


def test_lie_other_tenant_on_gets(api):
    other = api.sb.state.tenant(api.sb.tenant_ids[1])
    path, honest = group_get(api)
    add_fault(api, path="clientgroup.api/get/*", kind="lie_other_tenant")
    lie = api.xml(path)
    group = other.groups[lie.findtext("Group/UUID")]  # another tenant's group, with its own members
    assert members(lie) == [c.uuid for c in group.members]
    job = next(iter(api.tenant.jobs.values()))
    add_fault(api, path="job.api/get", kind="lie_other_tenant")
    assert api.xml(f"job.api/get/{job.job_number}").findtext("Job/UUID") in other.jobs_by_uuid
    entry = next(iter(api.tenant.times.values()))
    add_fault(api, path="time.api/get", kind="lie_other_tenant")
    assert api.xml(f"time.api/get/{entry.uuid}").findtext("Time/UUID") in other.times


def test_lies_on_a_get_without_nested_lists(api):
    entry = next(iter(api.tenant.times.values()))
    path = f"time.api/get/{entry.uuid}"
    add_fault(api, path=path, kind="lie_duplicate")
    assert [t.findtext("UUID") for t in api.xml(path).iterfind("Time")] == [entry.uuid, entry.uuid]
    add_fault(api, path=path, kind="lie_empty_list")
    assert api.xml(path).find("Time") is None
    add_fault(api, path=path, kind="lie_missing_list")
    assert api.xml(path).find("Time") is None
    add_fault(api, path="job.api/get", kind="lie_missing_list")
    job = next(iter(api.tenant.jobs.values()))
    assert api.xml(f"job.api/get/{job.job_number}").find("Job") is None


@pytest.mark.parametrize("spec, says", [
    ({"kind": "lie_cut", "fraction": 0}, "fraction must be in (0, 1)"),
    ({"kind": "lie_cut", "fraction": 1}, "fraction must be in (0, 1)"),
    ({"kind": "lie_cut", "colour": "red"}, "lie_cut takes no parameter 'colour' (takes: fraction)"),
    ({"kind": "lie_other_tenant", "source_tenant": "00000000-0000-0000-0000-000000000000"}, "source_tenant must be"),
    ({"kind": "lie_other_tenant", "source_tenant": 7}, "source_tenant must be a tenant of this sandbox, got 7"),
])
def test_bad_lie_specs(api, spec, says):
    answer = api.admin("POST", "faults", {"path": "staff.api/list", **spec})
    assert answer.status_code == 400 and says in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_lie_other_tenant_needs_another_tenant(api, clock):
    same = api.admin("POST", "faults", {"path": "staff.api/list", "kind": "lie_other_tenant",
                                        "tenant": api.tenant_id, "source_tenant": api.tenant_id})
    assert same.status_code == 400 and "differ" in same.json()["error"]
    with SandboxServer(make_config(clock=clock, tenants=1)) as sb:
        answer = http.post(sb.base_url + "/_sandbox/faults", json={"path": "x", "kind": "lie_other_tenant"})
        assert answer.status_code == 400 and "2 tenants" in answer.json()["error"]
