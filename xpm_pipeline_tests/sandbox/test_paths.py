"""XPM's paths as Xero documents them: 3.0 and 3.1 both served, and every other path under
``/practicemanager/`` answered like XPM (its XML error document), never the sandbox's plain-text 404."""

from __future__ import annotations

import pytest

from xpm_pipeline_tests.sandbox.conftest import http

XML = "text/xml; charset=utf-8"


def test_both_api_versions_serve_the_same_clients(api):
    # Xero's own Postman collection for XPM calls /practicemanager/3.0/client.api/list.
    names = {}
    for version in ("3.0", "3.1"):
        root = api.xml(f"{api.sb.base_url}/practicemanager/{version}/client.api/list")
        names[version] = sorted(c.findtext("Name") for c in root.iter("Client"))
    assert names["3.0"] and names["3.0"] == names["3.1"]
    assert [e["path"] for e in api.admin("GET", "log").json()] == [
        "/practicemanager/3.0/client.api/list", "/practicemanager/3.1/client.api/list"]


def test_a_3_0_call_is_authenticated_and_counted_like_3_1(api):
    anonymous = http.get(f"{api.sb.base_url}/practicemanager/3.0/client.api/list")
    assert anonymous.status_code == 401
    api.xml(f"{api.sb.base_url}/practicemanager/3.0/staff.api/list")
    assert api.admin("GET", "limits").json()["usage"][api.tenant_id]["minute"] == 1


@pytest.mark.parametrize("path", [
    "/practicemanager/2.0/client.api/list",
    "/practicemanager/3.2/client.api/list",
    "/practicemanager/",
    "/practicemanager",
    "/practicemanager/client.api/list",
])
def test_unknown_paths_under_practicemanager_answer_with_xpm_error_xml(api, path):
    answer = http.get(api.sb.base_url + path, headers=api.http.headers)
    assert answer.headers["content-type"] == XML
    assert path in api.error(answer, 404)


def test_unknown_method_under_3_0_is_the_same_xml_404_as_under_3_1(api):
    for version in ("3.0", "3.1"):
        described = api.error(api.get(f"{api.sb.base_url}/practicemanager/{version}/nothing.api/list"), 404)
        assert "nothing.api/list" in described
