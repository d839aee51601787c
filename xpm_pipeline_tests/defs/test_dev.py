"""`xpm-pipeline ui` wiring that needs no running server (the running one: test_dagster_dev)."""

from __future__ import annotations

from types import SimpleNamespace

import yaml
from typer.testing import CliRunner

from xpm_pipeline.cli import app
from xpm_pipeline.config import Settings
from xpm_pipeline.defs.dev import UIOptions, dagster_dev_command, ui_environment
from xpm_pipeline.defs.instance import RUN_COORDINATOR, write_local_instance


def test_ui_environment_points_everything_at_the_sandbox(tmp_path):
    home = tmp_path / "ui"
    home.mkdir()
    sandbox = SimpleNamespace(base_url="http://127.0.0.1:4321", client_id="cid", client_secret="secret")
    env = ui_environment(UIOptions(home=home, minute_limit=1000), sandbox, base={"XPM_IDENTITY_URL": "https://x",
                                                                                    "XPM_TOKEN_URL": "https://x/t"})
    settings = Settings.from_env(env)
    assert settings.api_base_url == "http://127.0.0.1:4321/practicemanager/3.1/"
    assert settings.identity.token_url == "http://127.0.0.1:4321/connect/token"
    assert settings.warehouse_url == f"sqlite:///{(home / 'warehouse.db').resolve().as_posix()}"
    assert settings.minute_limit == 1000 and settings.client_id == "cid"
    assert env["DAGSTER_HOME"] == str((home / "dagster").resolve())
    assert (home / "token.key").stat().st_mode & 0o077 == 0  # the local token key is private
    assert ui_environment(UIOptions(home=home), sandbox, base={})["XPM_TOKEN_KEY"] == env["XPM_TOKEN_KEY"]


def test_dagster_dev_command_and_instance(tmp_path):
    command = dagster_dev_command(UIOptions(port=3999))
    assert command[1:6] == ["-m", "dagster", "dev", "-m", "xpm_pipeline.definitions"]
    assert command[-2:] == ["--port", "3999"]
    config = yaml.safe_load(write_local_instance(tmp_path, dequeue_interval_seconds=2).read_text())
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert limits == RUN_COORDINATOR["config"]["tag_concurrency_limits"]
    assert "storage" not in config  # SQLite under DAGSTER_HOME


def test_ui_refuses_bad_options_before_starting_anything():
    result = CliRunner().invoke(app, ["ui", "--size", "huge"])
    assert result.exit_code == 2 and "small, medium or large" in result.output
    result = CliRunner().invoke(app, ["ui", "--tenants", "0"])
    assert result.exit_code == 2
