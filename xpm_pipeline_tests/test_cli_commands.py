"""Every `xpm-pipeline` sub-command, found by walking the command tree (so a new one cannot be missed):
its `--help` teaches (summary, every option with its help text), and bad input gets one line on stderr,
a non-zero exit code and no traceback."""

from __future__ import annotations

import json

import pytest
import typer

from xpm_pipeline.cli import app
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run


def _leaves(command, path=()):
    children = getattr(command, "commands", None)
    if not children:
        yield " ".join(path), command
        return
    for name, child in children.items():
        yield from _leaves(child, (*path, name))


COMMANDS = dict(_leaves(typer.main.get_command(app)))

# Per sub-command: (arguments, env overrides, text the one-line error must hold). "{tenant}" is a
# connected sandbox tenant, "{other}" a sandbox tenant not connected, "{missing}" a file that does not
# exist, "{bad_file}" a change file whose second line is wrong, "{good_file}" a valid one. An unknown
# tenant's error names it and says how to connect it.
BAD_INPUT: dict[str, list[tuple[tuple[str, ...], dict, str]]] = {
    "keygen": [(("keygen", "extra"), {}, "unexpected extra argument")],
    "connect": [
        (("connect", "--yes", "--tenant", "no-such-tenant"), {}, "no-such-tenant is not one this login may connect"),
        (("connect", "--timeout", "-1"), {}, "--timeout"),
        (("connect", "--port", "70000"), {}, "--port"),
    ],
    "disconnect": [(("disconnect", "--tenant", "no-such-tenant"), {}, "not connected")],
    "tenants": [(("tenants",), {"XPM_MINUTE_LIMIT": "0"}, "XPM_MINUTE_LIMIT")],
    "status": [(("status", "--tenant", "no-such-tenant"), {}, "unknown tenant 'no-such-tenant'")],
    "sync": [
        (("sync", "--tenant", "no-such-tenant", "--mode", "initial"), {}, "not connected"),
        (("sync", "--tenant", "{tenant}", "--mode", "weekly"), {}, "initial, hourly or nightly"),
        (("sync",), {}, "Missing option '--tenant'"),
    ],
    "demo": [(("demo", "--size", "huge"), {}, "small, medium or large")],
    "ui": [(("ui", "--tenants", "99"), {}, "1-50"), (("ui", "--port", "70000"), {}, "1-65535")],
    "queue": [
        (("queue", "--status", "lost"), {}, "--status"),
        (("queue", "--tenant", "no-such-tenant"), {}, "unknown tenant 'no-such-tenant'"),
    ],
    "sandbox serve": [
        (("sandbox", "serve", "--port", "99999"), {}, "--port"),
        (("sandbox", "serve", "--size", "huge"), {}, "small|medium|large, got 'huge'"),
    ],
    "export add": [
        (("export", "add", "--tenant", "{tenant}", "--file", "{missing}"), {}, "missing.jsonl"),
        (("export", "add", "--tenant", "{tenant}", "--file", "{bad_file}"), {}, "line 2"),
        (("export", "add", "--tenant", "no-such-tenant", "--file", "{good_file}"), {}, "unknown tenant 'no-such-tenant'"),
    ],
    "export drain": [
        (("export", "drain", "--tenant", "no-such-tenant"), {}, "not connected"),
        (("export", "drain", "--tenant", "{tenant}", "--max-items", "0"), {}, "--max-items"),
    ],
    "export dry-run": [(("export", "dry-run", "--tenant", "no-such-tenant"), {}, "unknown tenant 'no-such-tenant'")],
    "export retry-dead": [
        (("export", "retry-dead", "--tenant", "no-such-tenant"), {}, "unknown tenant 'no-such-tenant'"),
        (("export", "retry-dead", "--tenant", "{tenant}", "--item", "999999"), {}, "999999 is not a dead item"),
    ],
}


def test_every_sub_command_has_bad_input_cases():
    assert set(BAD_INPUT) == set(COMMANDS), set(COMMANDS) ^ set(BAD_INPUT)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_the_command_and_explains_every_option(name):
    command = COMMANDS[name]
    result = run(*name.split(), "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # the help is wrapped into a box: compare words
    summary = (command.help or "").strip().splitlines()[0]
    assert summary and " ".join(summary.split())[:60] in text
    for param in command.params:
        if param.name == "help":
            continue
        assert param.opts[0] in text, (name, param.opts)
        assert param.help, f"`{name}` option {param.opts[0]} has no help text"
        assert " ".join(param.help.split())[:40] in text, (name, param.opts[0])


@pytest.fixture(scope="module")
def connected(tmp_path_factory):
    """A sandbox with one tenant connected through the real command."""
    home = tmp_path_factory.mktemp("cli-commands")
    with SandboxServer(SandboxConfig(size="small", seed=3, tenants=2), port=0) as sandbox:
        env = cli_env(sandbox, home)
        tenant = sandbox.tenant_ids[0]
        result = run("connect", "--yes", "--no-sync", "--tenant", tenant, env=env)
        assert result.returncode == 0, result.stderr
        client = next(iter(sandbox.tenant(tenant).clients))
        change = {"kind": "client", "op": "update", "key": client, "fields": {"UUID": client, "Phone": "1"}}
        bad, good = home / "changes.jsonl", home / "good.jsonl"
        bad.write_text(json.dumps(change) + "\n" + json.dumps({**change, "kind": "invoice"}) + "\n")
        good.write_text(json.dumps(change) + "\n")
        yield env, {"tenant": tenant, "other": sandbox.tenant_ids[1], "missing": str(home / "missing.jsonl"),
                    "bad_file": str(bad), "good_file": str(good)}


CASES = [(name, *case) for name, cases in sorted(BAD_INPUT.items()) for case in cases]


@pytest.mark.parametrize("name, args, overrides, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_with_a_non_zero_exit(connected, name, args, overrides, expected):
    env, values = connected
    message = one_line_error(run(*(a.format(**values) for a in args), env={**env, **overrides}))
    assert expected in message, message
    if "unknown tenant" in expected or ("not connected" in expected and name != "disconnect"):
        assert "xpm-pipeline connect" in message, message  # and says how to connect it


def test_bad_input_changes_nothing(connected):
    """A refused change file queues nothing: the queue is as empty after it as before."""
    env, values = connected
    one_line_error(run("export", "add", "--tenant", values["tenant"], "--file", values["bad_file"], env=env))
    listed = run("queue", "--tenant", values["tenant"], env=env)
    assert listed.returncode == 0, listed.stderr
    assert "pending 0, sending 0, in_doubt 0, done 0, dead 0" in listed.stdout, listed.stdout
