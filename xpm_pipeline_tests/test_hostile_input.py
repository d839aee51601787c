"""Hostile and bad input the other suites do not already cover (issue 8): XML built to exhaust a parser
(measured in a fresh process, the document streamed from a file as XPM's answer streams in), external
entities, encodings and bytes XML forbids, odd but valid XPM answers, XPM's own error texts, a sync fed a
broken answer mid-run, change files built to break the reader, every environment setting set wrong, and
unknown tenants. Each gets one clear line, memory stays bounded, and nothing stored is changed or lost.

Already covered elsewhere: DOCTYPE, small entity expansions, external DTDs, invalid UTF-8, truncation and
wrong types (``xpm/test_parse.py``); malformed change files (``export/test_queue.py``); an unknown tenant
for every command (``test_cli_commands.py``, which this file checks is complete and adds "nothing
changed" to).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from xpm_pipeline.export import ChangeError, read_change_file
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.xpm.errors import XPMParseError
from xpm_pipeline.xpm.parse import ResponseStatusError, parse_response
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run
from xpm_pipeline_tests.xpm.test_parse import TIME, _times

MB = 1 << 20
H = b"<Response><Status>OK</Status><Times>"  # a time list's envelope, around hostile content
T = b"</Times></Response>"


def _peak_growth_mb(tmp_path: Path, parts: list[tuple[bytes, int]], entity: str) -> tuple[str, float, int]:
    """Write the document (``parts``: bytes, times repeated) to a file, then parse it in a fresh process
    that streams it in 64 KiB chunks as the client streams an answer: (outcome, MB of peak RSS growth
    over the process's size before parsing, document bytes). The document is never whole in memory, so
    the growth is the parser's own."""
    path = tmp_path / "answer.xml"
    with open(path, "wb") as out:
        for piece, times in parts:
            block = piece * max(1, (1 << 20) // max(1, len(piece)))  # write ~1 MiB at a time
            per_block = len(block) // len(piece)
            full, rest = divmod(times, per_block)
            for _ in range(full):
                out.write(block)
            out.write(piece * rest)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a big pytest process
    # would start with the parent's peak. Writing 5 to clear_refs resets VmHWM to the current size.
    code = f"""
import json
from xpm_pipeline.xpm.errors import XPMParseError
from xpm_pipeline.xpm.parse import parse_response
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
with open({str(path)!r}, "rb") as f:
    before = kib("VmRSS")
    try:
        parsed = parse_response(iter(lambda: f.read(65536), b""), {entity!r})
        outcome = "parsed " + json.dumps({{name: len(rows) for name, rows in parsed.rows.items()}})
    except XPMParseError as exc:
        outcome = "refused: " + str(exc)
print(json.dumps([outcome, max(0, kib("VmHWM") - before) / 1024]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    outcome, grown = json.loads(result.stdout)
    return outcome, grown, path.stat().st_size


def _laughs(encoding: str) -> bytes:
    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    return f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE r [{entities}]><Response><Status>&j;</Status>' \
           f'</Response>'.encode(encoding)


HOSTILE = [
    # (what, parts, entity, refusal text or None if it parses)
    ("100,000 nested elements", [(H, 1), (b"<a>", 100_000), (b"</a>", 100_000), (T, 1)], "timesheet", "malformed"),
    ("100,000 nested elements inside an entry", [(H + b"<Time>", 1), (b"<a>", 100_000), (b"</a>", 100_000),
                                                 (b"</Time>" + T, 1)], "timesheet", "malformed"),
    ("one 60 MB text node", [(H + b"<Time><Note>", 1), (b"x", 60 * MB), (b"</Note></Time>" + T, 1)], "timesheet",
     "single tag or value"),
    ("200 MB of text between elements", [(H, 1), (b"x", 200 * MB), (T, 1)], "timesheet", "single tag or value"),
    ("one 50 MB attribute value", [(H + b'<Time a="', 1), (b"x", 50 * MB), (b'"/>' + T, 1)], "timesheet",
     "single tag or value"),
    ("4 million attributes on one tag", [(H + b"<Time", 1), (b' a="1"', 4_000_000), (b"></Time>" + T, 1)],
     "timesheet", "single tag or value"),  # (repeated names: libxml2 would say so, but only once the tag ends)
    ("10 million empty elements in one entry", [(H + b"<Time>", 1), (b"<X/>", 10_000_000), (b"</Time>" + T, 1)],
     "timesheet", "more than 1,000,000 elements inside one <Time>"),
    ("10 million elements in a client's contacts", [
        (b"<Response><Status>OK</Status><Clients><Client><UUID>c</UUID><Name>n</Name><Contacts>", 1),
        (b"<X/>", 10_000_000), (b"</Contacts></Client></Clients></Response>", 1)],
     "client", "more than 1,000,000 elements inside one <Client>"),
    ("1.9 million elements in one entry (the batched path)", [(H + b"<Time>", 1), (b"<X/>", 1_900_000),
                                                              (b"</Time>" + T, 1)], "timesheet", "elements inside"),
    ("3 million unknown elements in the list", [(H, 1), (b"<Junk/>", 3_000_000), (T, 1)], "timesheet", None),
    ("billion laughs", [(_laughs("UTF-8"), 1)], "timesheet", "DOCTYPE"),
    ("billion laughs in UTF-16", [(_laughs("UTF-16"), 1)], "timesheet", "UTF-16"),
]


@pytest.mark.parametrize("what, parts, entity, refusal", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_documents_built_to_exhaust_the_parser_are_refused_in_bounded_memory(tmp_path, what, parts, entity,
                                                                           refusal):
    outcome, grown, size = _peak_growth_mb(tmp_path, parts, entity)
    if refusal is None:
        assert outcome.startswith("parsed"), (what, outcome)  # nothing in it XPM would send, nothing kept
    else:
        assert outcome.startswith("refused") and refusal in outcome, (what, outcome)
        assert len(outcome.splitlines()) == 1 and len(outcome) < 300, outcome
    assert grown < 200, f"{what}: peak RSS grew {grown:.0f} MB parsing a {size / MB:.0f} MB document"


PASSWD = Path("/etc/passwd").read_text()[:20] if Path("/etc/passwd").exists() else "root:x:0:0"
XXE = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
TIME_WITH_NOTE = ("<Response><Status>OK</Status><Times><Time><UUID>f30c8127-b101-455c-882e-92d856bc5576</UUID>"
                  "<Job><ID>J1</ID></Job><Task><UUID>301e019f-c41e-45cf-aa2f-10569900b82c</UUID></Task>"
                  "<Staff><UUID>d47b74e4-cc6c-41c5-b880-e60ac2f9e79c</UUID></Staff><Date>2026-08-14T00:00:00</Date>"
                  "<Minutes>90</Minutes><Note>{note}</Note></Time></Times></Response>")


@pytest.mark.parametrize(
    "doc, refusal",
    [
        ((XXE + TIME_WITH_NOTE.format(note="&x;")).encode(), "DOCTYPE"),
        (('<?xml version="1.0" encoding="UTF-16"?>' + XXE + TIME_WITH_NOTE.format(note="&x;")).encode("utf-16"),
         "UTF-16"),
        (('<?xml version="1.0" encoding="UTF-16LE"?>' + XXE + TIME_WITH_NOTE.format(note="&x;")).encode("utf-16-le"),
         "UTF-16"),
        (('<?xml version="1.0" encoding="UTF-32"?>' + XXE + TIME_WITH_NOTE.format(note="&x;")).encode("utf-32"),
         "UTF-32LE"),
        (('<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>' + TIME_WITH_NOTE.format(note="x")).encode(),
         "DOCTYPE"),
        (b"\n\n<!-- hello -->\n" + (XXE + TIME_WITH_NOTE.format(note="&x;")).encode(), "DOCTYPE"),
    ],
    ids=["utf-8", "utf-16", "utf-16-no-bom", "utf-32", "parameter-entity", "after-a-comment"],
)
def test_external_entities_are_refused_before_any_file_is_read(doc, refusal):
    for size in (len(doc), 7):  # whole, and dribbled in a few bytes at a time
        with pytest.raises(XPMParseError) as caught:
            parse_response([doc[i:i + size] for i in range(0, len(doc), size)], "timesheet")
        message = str(caught.value)
        assert refusal in message and PASSWD not in message and len(message.splitlines()) == 1, message


def test_xinclude_is_not_processed():
    doc = TIME_WITH_NOTE.format(note='<xi:include href="file:///etc/passwd" parse="text"/>').replace(
        "<Response>", '<Response xmlns:xi="http://www.w3.org/2001/XInclude">').encode()
    (row,) = parse_response(doc, "timesheet")["timesheet"].records()
    assert row["note"] is None and PASSWD not in json.dumps(row, default=str)


def _many_times(note: bytes, count: int = 400, at: int = 200) -> bytes:
    good = TIME_WITH_NOTE.format(note="ok").encode()
    entry = good[good.index(b"<Time>"):good.index(b"</Times>")]
    entries = [entry.replace(b"f30c8127", b"%08x" % i) for i in range(count)]
    entries[at] = entries[at].replace(b"<Note>ok</Note>", b"<Note>" + note + b"</Note>")
    return H + b"".join(entries) + T


@pytest.mark.parametrize(
    "note",
    [b"\xc0\xaf", b"\xed\xa0\x80", b"\x80abc", b"ab\xf0\x9f", b"\xff", b"\x01", b"\x00", b"&#0;", b"&#x1;",
     b"&#xD800;", b"&#xFFFE;"],
    ids=["overlong", "utf8-surrogate", "lone-continuation", "cut-4-byte", "ff", "control-char", "nul", "char-ref-0",
         "char-ref-1", "char-ref-surrogate", "char-ref-fffe"],
)
@pytest.mark.parametrize("chunk", [65536, 1], ids=["64k-chunks", "1-byte-chunks"])
def test_bytes_and_characters_xml_forbids_are_refused_in_one_line(note, chunk):
    doc = _many_times(note)
    with pytest.raises(XPMParseError, match="malformed") as caught:
        parse_response([doc[i:i + chunk] for i in range(0, len(doc), chunk)], "timesheet")
    assert len(str(caught.value).splitlines()) == 1


def test_valid_multibyte_text_split_across_chunks_is_kept_whole():
    note = "Café ☕ 𝄞 Māori"
    doc = _many_times(note.encode())
    rows = parse_response([doc[i:i + 1] for i in range(0, len(doc), 1)], "timesheet")["timesheet"]
    assert rows.column("note")[200] == note and len(rows) == 400


def test_xpm_error_texts_are_shown_on_one_bounded_line():
    description = ("Unable to find job J1\n" + "stack frame line\r\n\t" * 20_000).encode()
    doc = b"<Response><Status>ERROR</Status><ErrorDescription>" + description + b"</ErrorDescription></Response>"
    with pytest.raises(ResponseStatusError) as caught:
        parse_response(doc, "job")
    message = str(caught.value)
    assert message.startswith("Unable to find job J1 stack frame line") and len(message) <= 500
    assert "\n" not in message and "\t" not in message
    doc = b"<Response><Status>" + b"WHAT\n" * 200_000 + b"</Status></Response>"
    with pytest.raises(ResponseStatusError) as caught:
        parse_response(doc, "job")
    assert len(str(caught.value)) < 120 and "\n" not in str(caught.value)


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


JOB = (b"<Response><Status>OK</Status><Jobs><Job><ID>J1</ID><UUID>1a2b3c4d-0000-4000-8000-000000000001</UUID>"
       b"<Name>x</Name><Budget>10.00</Budget><StartDate>2026-07-01T00:00:00</StartDate>"
       b"<Client><UUID>1a2b3c4d-0000-4000-8000-000000000002</UUID></Client></Job></Jobs></Response>")
CLIENT = (b"<Response><Status>OK</Status><Clients><Client><UUID>362de1a5-b4a9-40e9-a7b5-6df4db2726cb</UUID>"
          b"<Name>H</Name><IsArchived>No</IsArchived></Client></Clients></Response>")


@pytest.mark.parametrize(
    "doc, entity, good, bad, field",
    [
        (TIME_WITH_NOTE.format(note="x").encode(), "timesheet", b"<Minutes>90</Minutes>", b"<Minutes>1.5</Minutes>",
         "Time/Minutes"),
        (TIME_WITH_NOTE.format(note="x").encode(), "timesheet", b"<Date>2026-08-14T00:00:00</Date>",
         b"<Date>2026-13-45T00:00:00</Date>", "Time/Date"),
        (JOB, "job", b"<Budget>10.00</Budget>", b"<Budget>NaN</Budget>", "Job/Budget"),
        (JOB, "job", b"<Budget>10.00</Budget>", b"<Budget>ten</Budget>", "Job/Budget"),
        (JOB, "job", b"<StartDate>2026-07-01T00:00:00</StartDate>", b"<StartDate>soon</StartDate>", "Job/StartDate"),
        (CLIENT, "client", b"<IsArchived>No</IsArchived>", b"<IsArchived>Perhaps</IsArchived>", "Client/IsArchived"),
    ],
    ids=["int", "date", "money-nan", "money-text", "job-date", "yes-no"],
)
def test_a_wrong_type_names_the_element_and_the_value_in_one_line(doc, entity, good, bad, field):
    parse_response(doc, entity)  # the answer as given is fine ...
    with pytest.raises(XPMParseError) as caught:  # ... one bad value is not
        parse_response(doc.replace(good, bad), entity)
    message = str(caught.value)
    value = bad[bad.index(b">") + 1:bad.index(b"</")].decode()
    assert field in message and repr(value) in message and len(message.splitlines()) == 1, message


# --- change files ------------------------------------------------------------------------------------

CLIENT_UUID = "362de1a5-b4a9-40e9-a7b5-6df4db2726cb"
GOOD_CHANGE = {"kind": "client", "op": "update", "key": CLIENT_UUID, "fields": {"Phone": "1"}}


def _change(**fields) -> str:
    return json.dumps({**GOOD_CHANGE, "fields": fields})


@pytest.mark.parametrize(
    "line, message",
    [
        ("[" * 100_000 + "]" * 100_000, "line 2: not valid JSON (nested too deeply)"),
        (_change(Phone=1).replace("1}", "9" * 5000 + "}"), "line 2: not valid JSON (Exceeds the limit"),
        (_change(Phone=1).replace("1}", "NaN}"), "line 2: not valid JSON (NaN is not a JSON value)"),
        (_change(Phone=1).replace("1}", "Infinity}"), "line 2: not valid JSON (Infinity is not a JSON value)"),
        ('{"kind": "client", "kind": "job", "op": "update", "key": "J1", "fields": {"Budget": 1}}',
         "line 2: not valid JSON (member 'kind' given twice)"),
        (_change(Phone="a\u0000b"), "line 2: field 'Phone': client_update.Phone: character U+0000 at position 2"),
        (_change(Phone="a\u0001b"), "line 2: field 'Phone': client_update.Phone: character U+0001"),
        (_change(Phone="1").replace('"1"', '"\\ud800"'), "line 2: field 'Phone': client_update.Phone: character U+D800"),
        (_change(Phone={"a": [1]}), "line 2: field 'Phone': client_update.Phone: expected text, got a JSON dict"),
        (_change(Phone=[1, 2]), "line 2: field 'Phone': client_update.Phone: expected text, got a JSON list"),
        ("\x00", "line 2: not valid JSON"),
    ],
    ids=["deep", "huge-int", "nan", "infinity", "repeated-member", "nul", "control-char", "lone-surrogate", "object",
         "list", "binary"],
)
def test_change_files_built_to_break_the_reader_get_one_line_naming_the_line(tmp_path, line, message):
    path = tmp_path / "changes.jsonl"
    path.write_text(json.dumps(GOOD_CHANGE) + "\n" + line + "\n", encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ChangeError) as caught:
        read_change_file(path)
    text = str(caught.value)
    assert text.startswith("changes.jsonl ") and message in text and len(text.splitlines()) == 1, text
    assert len(text) < 300


@pytest.fixture(scope="module")
def connected(tmp_path_factory):
    """A sandbox tenant connected through the real command, and a change queued."""
    home = tmp_path_factory.mktemp("hostile-cli")
    with SandboxServer(SandboxConfig(size="small", seed=6, tenants=2), port=0) as sandbox:
        env = cli_env(sandbox, home)
        tenant = sandbox.tenant_ids[0]
        assert run("connect", "--yes", "--no-sync", "--tenant", tenant, env=env).returncode == 0
        client = next(iter(sandbox.tenant(tenant).clients))
        queued = home / "queued.jsonl"
        queued.write_text(json.dumps({**GOOD_CHANGE, "key": client}) + "\n")
        assert run("export", "add", "--tenant", tenant, "--file", str(queued), env=env).returncode == 0
        yield sandbox, env, tenant, client, home


def _warehouse(home) -> dict[str, list]:
    """Every row of every table of the CLI's SQLite warehouse."""
    with sqlite3.connect(home / "warehouse.db") as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
        return {table: sorted(map(repr, db.execute(f'select * from "{table}"'))) for table in tables}


def test_a_refused_change_file_changes_nothing_in_the_warehouse(connected):
    sandbox, env, tenant, client, home = connected
    before = _warehouse(home)
    bad = home / "bad.jsonl"
    for line in ("[" * 50_000, _change(Phone="a\u0000b").replace(CLIENT_UUID, client),
                 _change(Phone=1).replace("1}", "NaN}"), _change(Phone="3").replace(CLIENT_UUID, f"../../{client}")):
        bad.write_text(json.dumps({**GOOD_CHANGE, "key": client, "fields": {"Phone": "2"}}) + "\n" + line + "\n")
        message = one_line_error(run("export", "add", "--tenant", tenant, "--file", str(bad), env=env))
        assert "bad.jsonl line 2" in message, message
    assert _warehouse(home) == before  # the queued change is as it was, nothing new


def test_every_command_taking_a_tenant_has_an_unknown_tenant_case():
    from xpm_pipeline_tests.test_cli_commands import BAD_INPUT, COMMANDS

    takes_tenant = {name for name, command in COMMANDS.items()
                    if any("--tenant" in param.opts for param in command.params)}
    covered = {name for name, cases in BAD_INPUT.items()
               if any("no-such-tenant" in args for args, _, _ in cases)}
    assert takes_tenant and takes_tenant <= covered, takes_tenant - covered


def test_unknown_tenants_change_nothing(connected):
    """Every command that takes --tenant, given one that is not connected: one line, exit code != 0, and
    the warehouse (tokens, tables, queue, runs) exactly as before."""
    from xpm_pipeline_tests.test_cli_commands import BAD_INPUT

    sandbox, env, tenant, client, home = connected
    good = home / "queued.jsonl"
    before = _warehouse(home)
    cases = [args for cases in BAD_INPUT.values() for args, _, _ in cases if "no-such-tenant" in args]
    cases.append(("sync", "--tenant", sandbox.tenant_ids[1], "--mode", "hourly"))  # in XPM, not connected
    for args in cases:
        args = tuple(a.replace("{good_file}", str(good)) for a in args)
        message = one_line_error(run(*args, env=env))
        assert "tenant" in message and ("no-such-tenant" in message or sandbox.tenant_ids[1] in message), message
    assert _warehouse(home) == before


def test_a_change_queued_before_the_character_rule_goes_dead_without_crashing_the_drain(connected):
    """An item already in the queue that XML cannot carry (a NUL, queued by an older version): the drain
    marks it dead with one line naming the field, and the next drain does not trip over it again."""
    sandbox, env, tenant, client, home = connected
    other = list(sandbox.tenant(tenant).clients)[1]
    item = home / "item.jsonl"
    item.write_text(json.dumps({**GOOD_CHANGE, "key": other, "fields": {"Phone": "PLACEHOLDER"}}) + "\n")
    assert run("export", "add", "--tenant", tenant, "--file", str(item), env=env).returncode == 0
    with sqlite3.connect(home / "warehouse.db") as db:  # what the character rule now refuses at `export add`
        changed = db.execute("update xpm_export_queue set payload = replace(payload, 'PLACEHOLDER', 'a\\u0000b')"
                             " where entity_key = ?", (other,)).rowcount
    assert changed == 1
    drained = run("export", "drain", "--tenant", tenant, env=env)
    assert "Traceback" not in drained.stderr and "XML compatible" not in drained.stderr, drained.stderr
    with sqlite3.connect(home / "warehouse.db") as db:
        status, error, attempts = db.execute(
            "select status, last_error, attempts from xpm_export_queue where entity_key = ?", (other,)).fetchone()
    assert status == "dead" and error.startswith("not sent: client_update.Phone: character U+0000"), (status, error)
    assert "\n" not in error
    again = run("export", "drain", "--tenant", tenant, env=env)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr


@pytest.mark.parametrize(
    "name, value, command",
    [
        ("XPM_LOG_LEVEL", "LOUD", ("tenants",)),
        ("XPM_LOG_LEVEL", "5x", ("tenants",)),
        ("XPM_HOME", "{file}", ("tenants",)),
        ("XPM_HOME", "{file}/below", ("tenants",)),
        ("XPM_CLIENT_ID", "", ("connect", "--yes", "--no-sync")),
        ("XPM_CLIENT_ID", "0123456789ABCDEF0123456789ABCDEF", ("connect", "--yes", "--no-sync")),
        ("XPM_CLIENT_SECRET", "not-the-secret-of-this-app-at-all", ("connect", "--yes", "--no-sync")),
    ],
)
def test_the_other_settings_set_wrong_are_one_line_too(sandbox, tmp_path, name, value, command):
    (tmp_path / "a-file").write_text("")
    value = value.format(file=tmp_path / "a-file")
    env = {**cli_env(sandbox, tmp_path), name: value}
    if name == "XPM_HOME":
        del env["XPM_WAREHOUSE_URL"]  # the warehouse goes under XPM_HOME
    message = one_line_error(run(*command, "--timeout", "20", env=env) if command[0] == "connect"
                             else run(*command, env=env))
    if name == "XPM_CLIENT_SECRET":
        assert "XPM_CLIENT_ID" in message or "XPM_CLIENT_SECRET" in message or "invalid_client" in message, message
        assert value not in message
    else:
        assert name in message or (name == "XPM_CLIENT_ID" and "unauthorized_client" in message), message
