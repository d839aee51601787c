"""Text from outside printed by `xpm-pipeline`: hostile strings in every source (an export file's key, XPM's
error answers, Xero's organisation names, a usage error's echo) come out literally, on one line, with no
traceback and nothing the terminal would act on (ESC sequences, C1 controls, bidi overrides)."""

from __future__ import annotations

import json
import re

import pytest

from xpm_pipeline import cli
from xpm_pipeline.cli_text import safe, visible
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.xpm.errors import XPMResponseError
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run

# Clears the screen, retitles the terminal, reverses the line, and closes a tag rich never opened.
HOSTILE = "[/bold]\x1b[2J\x1b]0;pwned\x07\u202e\x9b31m\nZ"
# What XPM can carry in XML (no C0 controls but newline): markup, C1 CSI, DEL, a bidi override.
XML_HOSTILE = "[/red]\x9b2J\x7f\u202eevil\nsecond"
TERMINAL_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # all but newline


def assert_inert(result, *shown: str) -> None:
    """No traceback, nothing for the terminal, and each outside text shown escaped."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert TERMINAL_CONTROL.search(output) is None, repr(output)
    flat = re.sub(r"\s*[│┃]\s*|\n", "", output)  # a long table cell folds over lines
    for text in shown:
        assert visible(text) in flat, (visible(text), output)


def test_safe_escapes_markup_and_every_control_character():
    assert safe("[/bold]") == "\\[/bold]"
    assert safe("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert safe("\x1b\x00\x7f\x85\x9b") == "\\x1b\\x00\\x7f\\x85\\x9b"
    assert safe("\u202a\u202e\u2066\u2069") == "\\u202a\\u202e\\u2066\\u2069"
    assert safe("Smith & Co — Zoë [2024] \\") == "Smith & Co — Zoë [2024] \\\\"  # ordinary text stays


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(SandboxConfig(size="small", seed=11, tenants=2), port=0) as server:
        yield server


@pytest.fixture
def env(sandbox, tmp_path):
    env = cli_env(sandbox, tmp_path)
    connected = run("connect", "--yes", "--no-sync", env=env)
    assert connected.returncode == 0, connected.stderr
    return env


def _change_file(tmp_path, name: str, key: str) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"kind": "job", "op": "update", "key": key, "fields": {"Budget": "1.00"}}) + "\n")
    return str(path)


def test_queue_shows_hostile_keys_and_xpm_refusals_literally(env, sandbox, tmp_path):
    from sqlalchemy import create_engine, update

    from xpm_pipeline.export.tables import queue

    waiting_tenant, drained_tenant = sandbox.tenant_ids
    refused = run("export", "add", "--tenant", waiting_tenant, "--file", _change_file(tmp_path, "bad.jsonl", HOSTILE),
                  env=env)
    assert refused.returncode != 0  # export add no longer takes such a key (one line, its line number) ...
    assert_inert(refused, HOSTILE)
    waiting_file = _change_file(tmp_path, "waiting.jsonl", "J000001")
    assert run("export", "add", "--tenant", waiting_tenant, "--file", waiting_file, env=env).returncode == 0
    engine = create_engine(env["XPM_WAREHOUSE_URL"])
    with engine.begin() as conn:  # ... but one queued by an older version, or edited in the table, may hold it
        conn.execute(update(queue).where(queue.c.tenant_id == waiting_tenant).values(entity_key=HOSTILE))
    engine.dispose()
    drained_file = _change_file(tmp_path, "drained.jsonl", "J000002")
    assert run("export", "add", "--tenant", drained_tenant, "--file", drained_file, env=env).returncode == 0
    planned = run("export", "dry-run", "--tenant", waiting_tenant, env=env)
    assert planned.returncode == 0, planned.stderr
    assert_inert(planned, HOSTILE)

    sandbox.add_fault(path="job.api/update", kind="error_200", message=XML_HOSTILE + " refused")
    drained = run("export", "drain", "--tenant", drained_tenant, env=env)
    assert drained.returncode == 0 and "1 dead" in drained.stdout, drained.stderr
    listed = run("queue", env=env)  # every tenant: the waiting item's key, the dead one's XPM answer
    assert listed.returncode == 0, listed.stderr
    first_line, rest = XML_HOSTILE.split("\n")
    assert_inert(listed, HOSTILE, first_line, rest + " refused")  # XPM's text is kept on one line


def test_tenant_names_from_xero_are_shown_literally(sandbox, tmp_path):
    tenant = sandbox.tenant_ids[0]
    names = sandbox.identity.tenants
    original, names[tenant] = names[tenant], "Practice " + HOSTILE  # the name Xero's /connections lists
    try:
        env = cli_env(sandbox, tmp_path)
        for args in (("connect", "--yes", "--no-sync"), ("tenants",), ("status",)):
            shown = run(*args, env=env)
            assert shown.returncode == 0, shown.stderr
            assert_inert(shown, HOSTILE)
    finally:
        names[tenant] = original


def test_an_xpm_error_in_a_sync_is_one_literal_line_and_stays_so_in_status(env, sandbox):
    tenant = sandbox.tenant_ids[0]
    sandbox.add_fault(path="staff.api/list", kind="error_200", message=XML_HOSTILE, count=10)
    synced = run("sync", "--tenant", tenant, "--mode", "initial", "--entity", "staff", env=env)
    assert synced.returncode == 1, synced.stderr
    first_line = XML_HOSTILE.split("\n")[0]  # a sync run records the first line of its error
    assert_inert(synced, first_line)
    errors = [line for line in synced.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: staff: ") and visible(first_line) in errors[0], errors

    shown = run("status", "--tenant", tenant, env=env)
    assert shown.returncode == 0, shown.stderr
    assert_inert(shown, first_line)


def test_an_xpm_error_raised_by_a_command_is_one_literal_line(capsys):
    """What `main` does with an XPM error a command lets through (no sandbox path raises one with XPM's own
    words, so the error is made here)."""
    failure = XPMResponseError(f"XPM job.api/update: {HOSTILE}", status_code=200, path="job.api/update")
    with pytest.raises(SystemExit) as exited:
        cli._fail(failure)
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == "error: XPM job.api/update: " + visible(HOSTILE.split("\n")[0]) + "\n"


def test_a_usage_error_echoing_hostile_input_is_one_literal_line(env):
    refused = run("status", "--tenant", HOSTILE, env=env)
    assert refused.returncode == 2
    one_line_error(refused)
    assert_inert(refused, "[/bold]")
    assert "\\x1b[2J" in refused.stderr
