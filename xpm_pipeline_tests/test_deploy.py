"""The deployment files in deploy/, tested as far as this machine allows (no container registry here):
the Docker instance config loads with its launcher on PostgreSQL, every file carries the same run limits
as dagster.yaml, and the code location serves over gRPC exactly as the container's command starts it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from xpm_pipeline.config import Settings
from xpm_pipeline.defs.instance import RUN_COORDINATOR
from xpm_pipeline.secrets import Secret
from xpm_pipeline.xpm.auth import OAuthClient

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


# Xero's own endpoints, spelt out here (not imported) so a changed constant cannot pass unnoticed.
XERO = {
    "api": "https://api.xero.com/practicemanager/3.1/",
    "authorize": "https://login.xero.com/identity/connect/authorize",
    "token": "https://identity.xero.com/connect/token",
    "revoke": "https://identity.xero.com/connect/revocation",
    "connections": "https://api.xero.com/connections",
}
# What an operator exports before `docker compose up` (the compose file requires these three).
HOST_SECRETS = {"XPM_CLIENT_ID": "app-id", "XPM_CLIENT_SECRET": "app-secret-value", "XPM_TOKEN_KEY": "k" * 44}
_COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _compose_interpolate(value: str, host: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}`` and ``${NAME:?message}``."""
    def one(match: re.Match) -> str:
        name, operator, argument = match.groups()
        present = host.get(name)
        unset = not present if operator in (":-", ":?") else present is None
        if operator and unset:
            if operator.endswith("?"):
                raise AssertionError(f"compose would refuse to start: {argument}")
            return argument
        return present or ""
    return _COMPOSE_VARIABLE.sub(one, value)


def _image_env() -> dict[str, str]:
    """The ``ENV`` lines of the Dockerfile: every container of the image starts with these."""
    env: dict[str, str] = {}
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _compose_env(service: str, host: dict[str, str]) -> dict[str, str]:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    declared = compose["services"][service]["environment"]
    return _image_env() | {name: _compose_interpolate(str(value), host) for name, value in declared.items()}


def _docker_run_env(host: dict[str, str]) -> dict[str, str]:
    """A run container: the image's ENV plus what DockerRunLauncher passes on from the daemon."""
    daemon = _compose_env("daemon", host)
    passed = yaml.safe_load((DOCKER / "dagster.yaml").read_text())["run_launcher"]["config"]["env_vars"]
    return _image_env() | {name: daemon[name] for name in passed if name in daemon}


def _helm_env() -> dict[str, str]:
    """The code location's pod (and its runs): the image's ENV, the secret, then the values' env list."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    return _image_env() | HOST_SECRETS | {item["name"]: str(item["value"]) for item in deployment.get("env", [])}


def _endpoints(env: dict[str, str]) -> dict[str, str]:
    settings = Settings.from_env(env)
    identity = settings.identity
    return {"api": settings.api_base_url, "authorize": identity.authorize_url, "token": identity.token_url,
            "revoke": identity.revoke_url, "connections": identity.connections_url}


def _shipped_environments() -> dict[str, dict[str, str]]:
    shipped = {f"compose {name}": _compose_env(name, HOST_SECRETS) for name in ("code", "webserver", "daemon")}
    shipped["docker run container"] = _docker_run_env(HOST_SECRETS)
    shipped["helm code location"] = _helm_env()
    shipped["image alone"] = _image_env()
    return shipped


def test_every_shipped_config_talks_to_xeros_own_endpoints():
    resolved = {where: _endpoints(env) for where, env in _shipped_environments().items()}
    assert resolved == {where: XERO for where in resolved}


def test_a_shipped_config_sends_the_client_secret_and_refresh_token_only_to_xero_identity():
    """A refresh and a revocation through the real client, as the daemon's settings configure it."""
    settings = Settings.from_env(_compose_env("daemon", HOST_SECRETS))
    seen: list[tuple[str, bytes, str]] = []

    def identity(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.read(), request.headers.get("authorization", "")))
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "a", "refresh_token": "r2", "expires_in": 1800})
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(identity)) as http:
        oauth = OAuthClient(settings.identity, settings.client_id, settings.client_secret, http=http)
        oauth.refresh(Secret("refresh-token-value"))
        oauth.revoke(Secret("refresh-token-value"))
    assert [url for url, _, _ in seen] == [XERO["token"], XERO["revoke"]]
    assert all(b"refresh-token-value" in body and authorization.startswith("Basic ") for _, body, authorization in seen)


def test_endpoint_overrides_set_on_the_host_reach_the_daemon_and_every_run():
    host = HOST_SECRETS | {"XPM_API_VERSION": "3.0", "XPM_TOKEN_URL": "https://token.example.com/t",
                           "XPM_AUTHORIZE_URL": "https://login.example.com/a",
                           "XPM_REVOKE_URL": "https://token.example.com/r",
                           "XPM_CONNECTIONS_URL": "https://api.example.com/c"}
    expected = {"api": "https://api.xero.com/practicemanager/3.0/", "authorize": "https://login.example.com/a",
                "token": "https://token.example.com/t", "revoke": "https://token.example.com/r",
                "connections": "https://api.example.com/c"}
    assert _endpoints(_compose_env("daemon", host)) == expected
    assert _endpoints(_docker_run_env(host)) == expected
    identity_origin = HOST_SECRETS | {"XPM_IDENTITY_URL": "https://id.example.com"}
    assert _endpoints(_docker_run_env(identity_origin))["token"] == "https://id.example.com/connect/token"


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
