"""Xero's own Postman collection for XPM, run with newman against the sandbox: the sandbox answers a
third-party XPM client as Xero does (``/connections``, ``/practicemanager/3.0/client.api/list``, and a
refresh sent as multipart/form-data). The collection (XeroAPI/xeropracticemanager-postman-oauth2, MIT) is not
part of this repository: point ``XPM_POSTMAN_COLLECTION`` at a copy (default: ``../shared/postman/`` beside the
checkout); it names Xero's hosts, and the test points a copy at the sandbox. newman comes from the npm registry (``npm install -g newman@6``, or
``XPM_NEWMAN`` naming the binary); without it the test skips, or fails under ``XPM_REQUIRE_NEWMAN=1``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from xpm_pipeline.sandbox import SandboxServer
from xpm_pipeline_tests.sandbox.conftest import make_config

COLLECTION = Path(os.environ.get("XPM_POSTMAN_COLLECTION") or
                  Path(__file__).resolve().parents[2].parent / "shared" / "postman" / "xero_xpm_postman_collection.json")
XERO_ORIGINS = ("https://api.xero.com", "https://identity.xero.com")
# "Get started" relies on Postman's interactive OAuth 2.0 dialog for its token; the rest run as shipped.
REQUESTS = ("Connections", "Client List", "Refresh token")

pytestmark = pytest.mark.slow


def _newman() -> str:
    if not COLLECTION.is_file():
        reason = f"Xero's Postman collection is not at {COLLECTION} (set XPM_POSTMAN_COLLECTION)"
        if os.environ.get("XPM_REQUIRE_NEWMAN"):
            pytest.fail(reason)
        pytest.skip(reason)
    found = os.environ.get("XPM_NEWMAN") or shutil.which("newman")
    if not found:
        reason = "newman is not installed (npm install -g newman@6, or set XPM_NEWMAN)"
        if os.environ.get("XPM_REQUIRE_NEWMAN"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _pointed_at(collection: dict, origin: str) -> dict:
    for item in collection["item"]:
        raw = item["request"]["url"]["raw"]
        for xero in XERO_ORIGINS:
            raw = raw.replace(xero, origin)
        item["request"]["url"] = raw
    return collection


def test_xeros_postman_collection_runs_against_the_sandbox(tmp_path):
    newman = _newman()
    with SandboxServer(make_config()) as sandbox:
        tenant = sandbox.tenant_ids[0]
        issued = sandbox.issue_token(tenant)
        collection = _pointed_at(json.loads(COLLECTION.read_text()), sandbox.base_url)
        assert all(origin not in json.dumps(collection) for origin in XERO_ORIGINS)
        (tmp_path / "collection.json").write_text(json.dumps(collection))
        variables = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
                     "access_token": issued["access_token"], "refresh_token": issued["refresh_token"]}
        (tmp_path / "environment.json").write_text(json.dumps(
            {"values": [{"key": k, "value": v, "enabled": True} for k, v in variables.items()]}))
        folders = [arg for name in REQUESTS for arg in ("--folder", name)]
        run = subprocess.run(
            [newman, "run", str(tmp_path / "collection.json"), "-e", str(tmp_path / "environment.json"), *folders,
             "--reporters", "json", "--reporter-json-export", str(tmp_path / "report.json")],
            capture_output=True, text=True, timeout=120)
        report = json.loads((tmp_path / "report.json").read_text())["run"]
        log = [(e["method"], e["path"], e["status"]) for e in sandbox.log_entries()]

    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-2000:], report["failures"])
    executions = {e["item"]["name"]: e for e in report["executions"]}
    assert list(executions) == list(REQUESTS) and report["failures"] == []
    assert log == [("GET", "/connections", 200), ("GET", "/practicemanager/3.0/client.api/list", 200),
                   ("POST", "/connect/token", 200)]
    clients = etree.fromstring(bytes(executions["Client List"]["response"]["stream"]["data"]))
    assert clients.findtext("Status") == "OK" and len(clients.findall("Clients/Client")) > 0
    refreshed = json.loads(bytes(executions["Refresh token"]["response"]["stream"]["data"]))
    assert refreshed["refresh_token"] != issued["refresh_token"] and refreshed["expires_in"] == 1800
