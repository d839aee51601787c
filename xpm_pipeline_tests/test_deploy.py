"""The deployment files in deploy/, tested as far as this machine allows (no container registry here):
the Docker instance config loads with its launcher on PostgreSQL, every file carries the same run limits
as dagster.yaml, and the code location serves over gRPC exactly as the container's command starts it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from sqlalchemy.engine import make_url

from xpm_pipeline.defs.instance import RUN_COORDINATOR

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "deploy" / "docker"
K8S = REPO / "deploy" / "k8s"


def _limits(config: dict) -> list[dict]:
    return config["run_coordinator"]["config"]["tag_concurrency_limits"]


def test_docker_instance_has_the_production_run_limits():
    config = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    production = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["run_coordinator"] == production["run_coordinator"] == RUN_COORDINATOR
    assert config["storage"] == production["storage"]
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    env_vars = set(launcher["config"]["env_vars"])
    assert {"XPM_DAGSTER_PG_URL", "XPM_WAREHOUSE_URL", "XPM_CLIENT_ID", "XPM_CLIENT_SECRET", "XPM_TOKEN_KEY"} <= env_vars


@pytest.mark.postgres
def test_docker_instance_loads_on_postgres_with_the_docker_launcher(tmp_path, postgres_url, monkeypatch):
    pg = make_url(postgres_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    monkeypatch.setenv("XPM_DAGSTER_PG_URL", pg)
    monkeypatch.setenv("XPM_PIPELINE_IMAGE", "xpm-pipeline:test")
    shutil.copy(DOCKER / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        assert instance.run_launcher.image == "xpm-pipeline:test"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
        assert limits == RUN_COORDINATOR["config"]["tag_concurrency_limits"]
    finally:
        instance.dispose()


def test_compose_wires_code_webserver_and_daemon():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon"}
    assert services["code"]["command"][-2:] == ["-m", "xpm_pipeline.definitions"]
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["host"] == "code" and str(server["port"]) in services["code"]["command"]
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/home/workspace.yaml" in services[name]["command"]
    env = services["daemon"]["environment"]
    assert env["XPM_DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")  # dagster-postgres needs psycopg2
    assert env["XPM_WAREHOUSE_URL"].startswith("postgresql://")  # the warehouse uses psycopg 3
    assert "/var/run/docker.sock" in services["daemon"]["volumes"][0]  # the launcher starts run containers
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile and "'.[deploy]'" in dockerfile
    assert "dagster.yaml" in dockerfile and "workspace.yaml" in dockerfile


def test_helm_values_keep_the_same_limits():
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    expected = RUN_COORDINATOR["config"]
    assert queued["maxConcurrentRuns"] == expected["max_concurrent_runs"]
    assert [(t["key"], t["value"], t["limit"]) for t in queued["tagConcurrencyLimits"]] == [
        (t["key"], t["value"], t["limit"]) for t in expected["tag_concurrency_limits"]]
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "xpm_pipeline.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_code_location_serves_over_grpc_as_in_the_container(tmp_path):
    """`dagster code-server start -m xpm_pipeline.definitions` (the image's command) answers health checks."""
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "XPM_HOME": str(tmp_path / "xpm")}
    server = subprocess.Popen(
        [str(bin_dir / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
         "-m", "xpm_pipeline.definitions"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        healthy = False
        for _ in range(240):  # a hang guard, not a speed assertion
            check = subprocess.run([str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                                   env=env, capture_output=True, text=True)
            if check.returncode == 0:
                healthy = True
                break
            if server.poll() is not None:
                break
            time.sleep(0.5)
        assert healthy, server.stdout.read() if server.poll() is not None else "no healthy answer"
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
