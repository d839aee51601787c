"""End to end through Dagster's own services: ``xpm-pipeline ui`` (sandbox + ``dagster dev``) on a free
port, inspected and driven only through its GraphQL API.

1. Smoke: the assets, checks, schedules, sensors and tenant partitions are there; the instance shows
   the one-run-per-tenant limit.
2. Backfills: while the tenant sensor's initial syncs run, a job backfill (full sync) and an asset
   backfill (hourly tables) of the 3 tenants are launched; the backfill daemon and the queued run
   coordinator run them all, and no tenant ever has two runs at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from xpm_pipeline.entities import ENTITIES

pytestmark = pytest.mark.slow

SYNC_TABLES = {entity.table for entity in ENTITIES.values()} | {"xpm_timesheet_changes"}
LOCATION = "xpm_pipeline.definitions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GraphQL:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def __call__(self, query: str, **variables):
        response = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=30)
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, what: str, probe, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = probe()
            except (httpx.HTTPError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; log:\n{self.log.read_text()[-4000:]}")
            time.sleep(1)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui")
    port = free_port()
    log = home / "ui.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XPM_", "DAGSTER_"))}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "xpm_pipeline.cli", "ui", "--port", str(port), "--home", str(home / "xpm"),
             "--minute-limit", "1000"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            # as a shell's background job starts it: SIGINT ignored (the command must still stop cleanly)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    graphql = GraphQL(f"http://127.0.0.1:{port}/graphql", log)
    try:
        graphql.wait_for("the webserver", lambda: graphql("{ version }")["version"], timeout=90)
        yield graphql
    finally:
        process.send_signal(signal.SIGTERM)  # xpm-pipeline ui stops dagster dev, then the sandbox
        leftovers = not _group_gone(process, timeout=90)
        if leftovers:
            os.killpg(process.pid, signal.SIGKILL)  # the session this test started, nothing else
        process.wait()
        assert not leftovers, f"processes outlived `xpm-pipeline ui`; log:\n{log.read_text()[-3000:]}"


def _group_gone(process: subprocess.Popen, timeout: float) -> bool:
    """Whether the ui command and everything it started (its session's process group) have exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False

ASSETS = """{ assetNodes { assetKey { path } partitionDefinition { name }
  assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""
REPOSITORY = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name }
  schedules { name cronSchedule executionTimezone scheduleState { status } }
  sensors { name sensorState { status } } jobs { name } } } } }"""
PARTITIONS = """{ assetNodeOrError(assetKey: {path: ["xpm_staff"]}) { ... on AssetNode { partitionKeys } } }"""
INSTANCE = "{ instance { runQueuingSupported runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml } } }"


def tenant_partitions(graphql) -> list[str]:
    return graphql(PARTITIONS)["assetNodeOrError"]["partitionKeys"]


def test_ui_serves_the_code_location(ui):
    from xpm_pipeline.definitions import defs

    nodes = {"/".join(n["assetKey"]["path"]): n for n in ui(ASSETS)["assetNodes"]}
    assert set(nodes) == {key.to_user_string() for key in defs.resolve_all_asset_keys()}  # what the location declares
    assert SYNC_TABLES | {"xpm_tenants"} <= set(nodes)
    assert all(nodes[table]["partitionDefinition"]["name"] == "tenant" for table in SYNC_TABLES)
    checks = {(key, c["name"]) for key, n in nodes.items() for c in n["assetChecksOrError"]["checks"]}
    assert ("xpm_timesheets", "matches_xpm") in checks and ("xpm_timesheets", "references_resolve") in checks
    assert ("xpm_timesheet_changes", "nightly_comparison") in checks
    assert ("xpm_staff", "fresh_within_2h") in checks and ("xpm_tenants", "refresh_tokens_healthy") in checks

    repository = ui(REPOSITORY)["repositoriesOrError"]["nodes"][0]
    assert repository["location"]["name"] == LOCATION
    schedules = {s["name"]: s for s in repository["schedules"]}
    # four crons, one per slot (GraphQL shows a cron list as its Python text)
    hourly = ["0 * * * *", "15 * * * *", "30 * * * *", "45 * * * *"]
    assert schedules["xpm_hourly_schedule"]["cronSchedule"] == str(hourly)
    assert schedules["xpm_nightly_schedule"]["executionTimezone"] == "Pacific/Auckland"
    assert set(schedules) == {"xpm_hourly_schedule", "xpm_nightly_schedule", "xpm_health_schedule"}
    assert all(s["scheduleState"]["status"] == "RUNNING" for s in schedules.values())
    sensors = {s["name"] for s in repository["sensors"]}
    assert sensors == {sensor.name for sensor in defs.sensors} >= {"xpm_tenant_sensor", "xpm_run_failure_sensor"}
    assert {"xpm_full_sync_job", "xpm_hourly_job", "xpm_nightly_job"} <= {j["name"] for j in repository["jobs"]}

    # the tenant sensor turns the connected sandbox practices into partitions
    tenants = ui.wait_for("tenant partitions", lambda: len(tenant_partitions(ui)) == 3 and tenant_partitions(ui), 90)
    assert len(set(tenants)) == 3

    queue = ui(INSTANCE)["instance"]
    assert queue["runQueuingSupported"]
    assert queue["runQueueConfig"]["maxConcurrentRuns"] == 8
    limits = queue["runQueueConfig"]["tagConcurrencyLimitsYaml"]
    assert "key: xpm/tenant" in limits and "applyLimitPerUniqueValue: true" in limits and "limit: 1" in limits


LAUNCH = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status isAssetBackfill runs { runId status } } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status startTime endTime runConfigYaml
  tags { key value } } } } }"""


def test_backfills_of_three_tenants_never_run_a_tenant_twice_at_once(ui):
    tenants = ui.wait_for("tenant partitions", lambda: len(tenant_partitions(ui)) == 3 and tenant_partitions(ui), 90)
    job_backfill = ui(LAUNCH, p={
        "selector": {"partitionSetName": "xpm_full_sync_job_partition_set",
                     "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}},
        "partitionNames": tenants,
    })["launchPartitionBackfill"]
    asset_backfill = ui(LAUNCH, p={
        "partitionNames": tenants,
        "assetSelection": [{"path": ["xpm_staff"]}, {"path": ["xpm_timesheets"]}],
        "runConfigData": {"ops": {"xpm_sync": {"config": {"mode": "hourly"}}}},
    })["launchPartitionBackfill"]
    assert job_backfill["__typename"] == asset_backfill["__typename"] == "LaunchBackfillSuccess", (job_backfill,
                                                                                                   asset_backfill)

    def finished(backfill_id):
        backfill = ui(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    done = [ui.wait_for(f"backfill {b['backfillId']}", lambda b=b: finished(b["backfillId"]), timeout=240)
            for b in (job_backfill, asset_backfill)]
    assert [b["status"] for b in done] == ["COMPLETED_SUCCESS", "COMPLETED_SUCCESS"]
    assert [b["isAssetBackfill"] for b in done] == [False, True]
    assert all(len(b["runs"]) == 3 and {r["status"] for r in b["runs"]} == {"SUCCESS"} for b in done)

    runs = ui(RUNS)["runsOrError"]["results"]
    by_tenant = defaultdict(list)
    for run in runs:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        tenant = tags.get("dagster/partition")
        if tenant is None:
            continue
        if tags.get("dagster/backfill") == job_backfill["backfillId"]:
            assert tags["xpm/tenant"] == tenant and "mode: nightly" in run["runConfigYaml"]
        if tags.get("dagster/backfill") == asset_backfill["backfillId"]:
            assert "mode: hourly" in run["runConfigYaml"]
        if run["startTime"] is None:
            continue  # still queued (a schedule may tick during the test)
        if run["endTime"] is not None:
            assert run["status"] == "SUCCESS", run
        by_tenant[tenant].append((run["startTime"], run["endTime"] or float("inf"), run["jobName"]))
    assert set(by_tenant) == set(tenants)
    for tenant, spans in by_tenant.items():
        spans.sort()
        assert len(spans) >= 3  # the sensor's initial sync and one run of each backfill
        for (_, previous_end, previous_job), (start, _, job) in zip(spans, spans[1:]):
            assert start >= previous_end, f"{tenant}: {job} started before {previous_job} ended"



LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
RUN_MODES = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  ... on MaterializationEvent { metadataEntries { label ... on TextMetadataEntry { text } } } } } } }"""


def test_a_graphql_launch_without_run_config_runs_the_jobs_flow(ui):
    """Issue 15: a job submitted through the API with no run config did the nightly flow whatever the job."""
    tenant = ui.wait_for("tenant partitions", lambda: len(tenant_partitions(ui)) == 3 and tenant_partitions(ui), 90)[0]
    launched = ui(LAUNCH_RUN, params={
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                     "jobName": "xpm_initial_job"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": tenant},
                                       {"key": "xpm/tenant", "value": tenant}]},
    })["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        status = ui(RUN_STATUS, id=run_id)["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert ui.wait_for(f"run {run_id}", finished, timeout=240) == "SUCCESS"
    events = ui(RUN_MODES, id=run_id)["logsForRun"]["events"]
    modes = {entry["text"] for event in events for entry in event.get("metadataEntries") or []
             if entry["label"] == "mode"}
    assert modes == {"initial"}

# --- the same UI in a real browser (issue 9: headless Chromium, screenshots kept as artifacts) -------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def artifacts_dir() -> Path:
    """Where screenshots go: ``$XPM_TEST_ARTIFACTS``, else ``.xpm/test-artifacts`` in the checkout."""
    folder = Path(os.environ.get("XPM_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / ".xpm" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        reason = "Debian's chromium and chromium-driver are not installed (bash .ci/ensure-chromium installs them)"
        if os.environ.get("XPM_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _page_shows(driver, url: str, texts: list[str], shot: str, timeout: float = 90) -> None:
    """Open ``url``, wait until every text is on the page, save a screenshot (also when it never shows)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: all(text in d.find_element(By.TAG_NAME, "body").text for text in texts))
    except TimeoutException:
        driver.save_screenshot(str(artifacts_dir() / f"FAILED-{shot}"))
        (artifacts_dir() / f"FAILED-{shot}.html").write_text(driver.page_source)
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"{url} never showed {[t for t in texts if t not in body]}; page text: {body[:1500]!r}")
    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        button.click()  # Dagster's first-visit "join the community" dialog would cover the page
    driver.save_screenshot(str(artifacts_dir() / shot))


def test_the_ui_in_a_real_browser_shows_the_xpm_assets_and_tenant_partitions(ui, browser):
    base = ui.url.removesuffix("/graphql")
    tables = sorted(SYNC_TABLES | {"xpm_tenants"})
    _page_shows(browser, f"{base}/assets", tables, "ui-assets.png")
    tenants = ui.wait_for("tenant partitions", lambda: len(tenant_partitions(ui)) == 3 and tenant_partitions(ui), 90)
    _page_shows(browser, f"{base}/assets/xpm_staff?view=partitions", [t[:8] for t in tenants], "ui-partitions.png")
    for shot in ("ui-assets.png", "ui-partitions.png"):
        image = (artifacts_dir() / shot).read_bytes()
        assert image.startswith(b"\x89PNG") and len(image) > 10_000, shot
