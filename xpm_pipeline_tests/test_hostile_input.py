"""Hostile and bad input the other suites do not already cover (issue 8): XML built to exhaust a parser,
odd but valid XPM answers, a sync fed a broken answer mid-run, and every environment setting set wrong.
Each gets one clear error, memory stays bounded, and nothing stored is lost.

Already covered elsewhere: DOCTYPE, entity expansion, external entities, invalid UTF-8, truncation and
wrong types (``xpm/test_parse.py``); malformed change files and unknown tenants for every command
(``test_cli_commands.py``, ``export/test_queue.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.xpm.errors import XPMParseError
from xpm_pipeline.xpm.parse import parse_response
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run
from xpm_pipeline_tests.xpm.test_parse import TIME, _times

MB = 1 << 20


def _peak_growth_mb(document: str) -> tuple[str, float]:
    """Parse ``document`` (a Python expression building the bytes) in a fresh process: (outcome, MB of
    peak RSS growth while parsing). A fresh process, so the figure is the parse's own."""
    code = f"""
import json, resource
from xpm_pipeline.xpm.errors import XPMParseError
from xpm_pipeline.xpm.parse import parse_response
doc = {document}
chunks = [doc[i:i + 65536] for i in range(0, len(doc), 65536)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    parse_response(iter(chunks), "timesheet", max_bytes=len(doc) + 1)
    outcome = "parsed"
except XPMParseError as exc:
    outcome = "refused: " + str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps([outcome, (after - before) / 1024]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome, grown = json.loads(result.stdout)
    return outcome, grown


@pytest.mark.parametrize(
    "what, document, refusal",
    [
        ("100,000 nested elements", "b'<Response><Status>OK</Status><Times>' + b'<a>' * 100_000 + b'</a>' * 100_000 "
         "+ b'</Times></Response>'", "malformed"),
        ("one 60 MB text node", "b'<Response><Status>OK</Status><Times><Time><Note>' + b'x' * (60 << 20) "
         "+ b'</Note></Time></Times></Response>'", "malformed"),
        ("3 million empty elements", "b'<Response><Status>OK</Status><Times>' + b'<Junk/>' * 3_000_000 "
         "+ b'</Times></Response>'", None),
    ],
)
def test_documents_built_to_exhaust_the_parser_are_refused_in_bounded_memory(what, document, refusal):
    outcome, grown = _peak_growth_mb(document)
    if refusal is None:
        assert outcome == "parsed", (what, outcome)  # nothing in it XPM would send, nothing kept
    else:
        assert outcome.startswith("refused") and refusal in outcome, (what, outcome)
        assert len(outcome.splitlines()) == 1
    # The document itself is in memory (built by the test); the parse must not multiply it.
    assert grown < 200, f"{what}: peak RSS grew {grown:.0f} MB while parsing"


def test_unknown_elements_and_enum_values_in_an_answer_are_kept_or_ignored_not_fatal():
    """XPM adds elements over time and has more job states than the docs list: an entry carrying both
    still parses, the unknown element is ignored and the unknown value kept as text."""
    extra = TIME.replace(b"<Billable>true</Billable>", b"<Billable>true</Billable><Colour>teal</Colour><New><X/></New>")
    (row,) = parse_response(_times(extra), "timesheet")["timesheet"].records()
    assert row["billable"] is True and "Colour" not in json.dumps(row, default=str)
    job = (b"<Response><Status>OK</Status><Jobs><Job><ID>J1</ID><UUID>1a2b3c4d-0000-4000-8000-000000000001</UUID>"
           b"<Name>x</Name><State>Frozen In Carbonite</State><Client><UUID>1a2b3c4d-0000-4000-8000-000000000002</UUID>"
           b"</Client></Job></Jobs></Response>")
    (parsed,) = parse_response(job, "job")["job"].records()
    assert parsed["state"] == "Frozen In Carbonite"


def test_a_wrong_type_in_one_entry_fails_the_read_with_the_field_named_and_nothing_half_kept():
    good = [TIME.replace(b"F30C8127", f"F30C{i:04d}".encode()) for i in range(300)]
    bad = good[:150] + [good[150].replace(b"<Minutes>-90</Minutes>", b"<Minutes>1e9999</Minutes>")] + good[151:]
    with pytest.raises(XPMParseError) as caught:
        parse_response(_times(*bad), "timesheet")
    message = str(caught.value)
    assert "Time/Minutes" in message and "1e9999" in message and len(message.splitlines()) == 1


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(SandboxConfig(size="small", seed=4, tenants=1), port=0) as server:
        yield server


def test_a_sync_fed_a_broken_answer_fails_clearly_and_keeps_what_it_had(warehouse_url):
    """A hostile answer in the middle of a nightly: the step fails with one line in xpm_sync_runs, its
    tables keep the rows of the last good run, and the next run (answer fixed) completes."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from xpm_pipeline.clock import ManualClock
    from xpm_pipeline.demo import PersonEdits
    from xpm_pipeline.sync.context import INITIAL, NIGHTLY, SyncContext
    from xpm_pipeline.sync.run import run_sync
    from xpm_pipeline.warehouse.db import make_engine
    from xpm_pipeline.warehouse.migrate import migrate
    from xpm_pipeline.warehouse.schema import sync_runs, table_for
    from xpm_pipeline_tests.support import sandbox_client

    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc))
    engine = make_engine(warehouse_url)
    migrate(engine, clock=clock)

    def snapshot():
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(select(table_for(t))).all())) for t in ("client", "client_contact")}

    with SandboxServer(SandboxConfig(size="small", seed=4, tenants=1, clock=clock), port=0) as sandbox, \
            sandbox_client(sandbox, sandbox.tenant_ids[0], clock) as client:
        tenant = sandbox.tenant_ids[0]
        assert run_sync(SyncContext(engine, client, tenant, INITIAL, clock=clock)).ok
        PersonEdits(sandbox.base_url, tenant, engine).make_all(clock.now().date())  # a contact's phone changes
        before = snapshot()
        clock.advance(3600)
        sandbox.add_fault(path="client.api/list", kind="doctype", entity="external", count=1000)
        broken = run_sync(SyncContext(engine, client, tenant, NIGHTLY, clock=clock), ["client"])
        sandbox.faults.clear()
        (outcome,) = broken.outcomes
        assert not outcome.ok and "DOCTYPE" in outcome.error and len(outcome.error.splitlines()) == 1
        assert snapshot() == before  # no half-applied table
        with engine.connect() as conn:
            errors = conn.execute(select(sync_runs.c.error).where(sync_runs.c.status == "failed")).scalars().all()
        assert errors and all("DOCTYPE" in error for error in errors)
        assert run_sync(SyncContext(engine, client, tenant, NIGHTLY, clock=clock), ["client"]).ok
        assert snapshot() != before  # the contact edit arrived once the answers were sane again
    engine.dispose()


BAD_ENV = [
    ("XPM_DAILY_LIMIT", "0"), ("XPM_DAILY_LIMIT", "ten thousand"), ("XPM_DAILY_LIMIT", "-5"),
    ("XPM_DAILY_RESERVE", "20000"), ("XPM_DAILY_RESERVE", "1.5"),
    ("XPM_MINUTE_LIMIT", "0"), ("XPM_MINUTE_LIMIT", "sixty"),
    ("XPM_API_BASE_URL", "ftp://nowhere"), ("XPM_API_BASE_URL", "not a url"),
    ("XPM_IDENTITY_URL", "gopher://x"),
    ("XPM_TOKEN_KEY", ""), ("XPM_TOKEN_KEY", "short"),
    ("XPM_WAREHOUSE_URL", "nosuchdb://x"), ("XPM_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:1/none"),
]


@pytest.mark.parametrize("name, value", BAD_ENV, ids=[f"{n}={v!r}" for n, v in BAD_ENV])
def test_every_bad_environment_setting_is_one_line_naming_it(sandbox, tmp_path, name, value):
    env = {**cli_env(sandbox, tmp_path), name: value}
    message = one_line_error(run("tenants", env=env, timeout=60))
    assert name in message, message
    if name == "XPM_TOKEN_KEY" and value:
        assert value not in message.replace(name, "")  # a key is never echoed, even a bad one
