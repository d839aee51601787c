"""Fault injection: every kind, matching by path/method/tenant and call number, and the log marks."""

from __future__ import annotations

import time

import httpx
import pytest
from lxml import etree

from xpm_pipeline_tests.sandbox.conftest import http
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
