"""The outbox: checked before queued, coalesced, deduplicated, ordered, and never half-written."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from xpm_pipeline.export import ChangeError, UnknownTenant, enqueue, read_change_file
from xpm_pipeline.export import queue as Q
from xpm_pipeline.export import tables as T
from xpm_pipeline_tests.export.support import job_updates, task_updates, timesheet_creates

LEASE = timedelta(seconds=600)


def _rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(T.queue).order_by(T.queue.c.item_id)).all()


def _write(tmp_path, lines, name="changes.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_a_bad_line_names_line_and_field_and_nothing_is_queued(runtime, sandbox, tenant, clock, tmp_path):
    good = timesheet_creates(sandbox, tenant, 3, clock.now().date())
    bad = dict(good[1], fields=dict(good[1]["fields"], Minutes="ninety"))
    path = _write(tmp_path, [good[0], bad, good[2]])
    with pytest.raises(ChangeError, match=r"changes.jsonl line 2: field 'Minutes'"):
        enqueue(runtime.engine, tenant, read_change_file(path), clock=clock)
    assert _rows(runtime.engine) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"line 1: not valid JSON"),
        ('{"kind": "invoice", "op": "create", "key": "x", "fields": {}}', r"field 'kind' must be one of"),
        ('{"kind": "job", "op": "create", "key": "x", "fields": {}}', r"field 'op' for kind job must be one of update"),
        ('{"kind": "job", "op": "update", "key": "", "fields": {"Budget": 1}}', r"field 'key'"),
        ('{"kind": "job", "op": "update", "key": "J1", "fields": {"Budgett": 1}}', r"field 'Budgett': .*unknown"),
        ('{"kind": "job", "op": "update", "key": "J1", "fields": {"DueDate": "31/12/2026"}}', r"field 'DueDate'"),
        ('{"kind": "job", "op": "update", "key": "J1", "fields": {"ID": "J2", "Budget": 1}}', r"differs from key"),
        ('{"kind": "job", "op": "update", "key": "J1", "fields": {}}', r"nothing to change"),
        ('{"kind": "timesheet", "op": "create", "key": "t", "fields": {"Job": "J1"}}', r"field 'TaskUUID'.*required"),
        ('[1, 2]', r"expected a JSON object"),
        ('{"kind": "job", "op": "update", "key": "J1", "fields": {"Budget": 1}, "extra": 1}', r"unknown member"),
    ],
)
def test_change_file_errors_are_one_line_and_precise(tmp_path, line, message):
    path = _write(tmp_path, [line])
    with pytest.raises(ChangeError, match=message) as caught:
        read_change_file(path)
    assert "\n" not in str(caught.value)


UUID = "362de1a5-b4a9-40e9-a7b5-6df4db2726cb"
TIME_FIELDS = {"Job": "J1", "TaskUUID": UUID, "StaffUUID": UUID, "Date": "2026-11-23", "Minutes": 5}


def _keyed(kind: str, op: str, key: str) -> dict:
    fields = {"timesheet": {"create": TIME_FIELDS, "update": {"Minutes": 5}, "delete": {}},
              "job": {"update": {"Budget": 1}}, "client": {"update": {"Phone": "1"}, "create": {"Name": "N"}},
              "task": {"update": {"EstimatedMinutes": 5}, "create": {"Job": "J1", "TaskUUID": UUID, "EstimatedMinutes": 5}}
              }[kind][op]
    return {"kind": kind, "op": op, "key": key, "fields": fields}


@pytest.mark.parametrize(
    "kind, op, key",
    [
        ("timesheet", "delete", f"../../client.api/contact/{UUID}"),
        ("timesheet", "delete", f"{UUID}?detailed=true"),
        ("timesheet", "delete", f"{UUID}/x"),
        ("timesheet", "delete", "my-entry-17"),
        ("timesheet", "update", UUID[:-1]),
        ("client", "update", "J000309"),
        ("client", "update", "{" + UUID + "}"),
        ("task", "update", f"{UUID}#x"),
        ("job", "update", "J/1"),
        ("job", "update", "../J1"),
        ("job", "update", "J1?x=1"),
        ("job", "update", "J#1"),
        ("job", "update", "J%2F1"),
        ("job", "update", "J..1"),
        ("job", "update", ".."),
        ("job", "update", "J 1"),
        ("job", "update", "J\t1"),
        ("job", "update", "J\u00001"),
        ("job", "update", "J\u20281"),
        ("job", "update", "J\\1"),
        ("job", "update", "-J1"),
        ("timesheet", "create", "my entry"),
        ("timesheet", "create", "a/b"),
        ("task", "create", "x\u0085y"),
        ("client", "create", "\ufffe"),
    ],
)
def test_a_key_that_is_not_what_its_kind_takes_is_refused_with_its_line(tmp_path, kind, op, key):
    good = {"kind": "job", "op": "update", "key": "J000309", "fields": {"Budget": 1}}
    with pytest.raises(ChangeError) as caught:
        read_change_file(_write(tmp_path, [good, _keyed(kind, op, key)]))
    message = str(caught.value)
    assert message.startswith("changes.jsonl line 2: field 'key': ") and len(message.splitlines()) == 1, message
    form = "an XPM UUID" if kind != "job" and op != "create" else ("a job number" if kind == "job" else "a local id")
    assert f"{kind} {op} takes {form} as key" in message, message


def test_a_bad_key_queues_nothing_from_the_file(runtime, tenant, clock, tmp_path):
    good = {"kind": "job", "op": "update", "key": "J000309", "fields": {"Budget": 1}}
    path = _write(tmp_path, [good, _keyed("timesheet", "delete", f"../../client.api/contact/{UUID}")])
    with pytest.raises(ChangeError, match="changes.jsonl line 2: field 'key'"):
        enqueue(runtime.engine, tenant, read_change_file(path), clock=clock)
    with pytest.raises(ChangeError, match="change 2: field 'key'"):  # changes given in code are checked too
        enqueue(runtime.engine, tenant, [good, _keyed("job", "update", "J1?x=1")], clock=clock)
    assert _rows(runtime.engine) == []


@pytest.mark.parametrize(
    "kind, op, key, stored",
    [
        ("job", "update", "J000309", "J000309"),
        ("job", "update", "ACME-2026.001", "ACME-2026.001"),  # practices set their own numbers
        ("job", "update", "TAX_0001", "TAX_0001"),
        ("job", "update", "Ü-12", "Ü-12"),
        ("job", "update", " J1 ", "J1"),
        ("client", "update", UUID.upper(), UUID),
        ("timesheet", "delete", UUID, UUID),
        ("timesheet", "create", "my-entry-17", "my-entry-17"),
        ("client", "create", "new:client@2026", "new:client@2026"),
    ],
)
def test_keys_xpm_uses_are_taken(tmp_path, kind, op, key, stored):
    (change,) = read_change_file(_write(tmp_path, [_keyed(kind, op, key)]))
    assert change.key == stored


def test_a_line_separator_inside_a_json_string_does_not_end_the_line(tmp_path):
    change = _keyed("timesheet", "create", "t1")
    change["fields"] = dict(change["fields"], Note="one\u2028two\u0085three")
    path = tmp_path / "changes.jsonl"
    path.write_text(json.dumps(change, ensure_ascii=False) + "\n" + json.dumps(_keyed("job", "update", "J1")) + "\n",
                    encoding="utf-8")
    first, second = read_change_file(path)
    assert first.fields["Note"] == "one\u2028two\u0085three" and second.key == "J1"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"Phone": "a\ufffeb"}, "line 1: field 'Phone': client_update.Phone: character U+FFFE at position 2"),
        ({"Phone": "a\x1bb"}, "line 1: field 'Phone': client_update.Phone: character U+001B at position 2"),
        ({"Pho\nne": "1"}, "line 1: field 'Pho\\nne': client_update: unknown field(s) Pho\\nne"),
    ],
)
def test_text_xml_cannot_carry_is_refused_with_its_line_on_one_line(tmp_path, fields, message):
    path = _write(tmp_path, [{"kind": "client", "op": "update", "key": UUID, "fields": fields}])
    with pytest.raises(ChangeError) as caught:
        read_change_file(path)
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1, str(caught.value)


def test_unreadable_and_empty_files(tmp_path):
    with pytest.raises(ChangeError, match="cannot read"):
        read_change_file(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ChangeError, match="no changes"):
        read_change_file(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(b'{"kind": "job"}\n\xff\xfe')
    with pytest.raises(ChangeError, match="line 2: not UTF-8"):
        read_change_file(tmp_path / "latin.jsonl")


def test_dates_in_either_form(tmp_path):
    (change,) = read_change_file(_write(tmp_path, [
        {"kind": "job", "op": "update", "key": "J1", "fields": {"DueDate": "20261201", "StartDate": "2026-11-23"}}]))
    assert change.fields["DueDate"] == "20261201"


def test_unknown_tenant_is_refused(runtime, clock):
    with pytest.raises(UnknownTenant, match="unknown tenant 'nope'"):
        enqueue(runtime.engine, "nope", [{"kind": "job", "op": "update", "key": "J1", "fields": {"Budget": 1}}],
                clock=clock)
    assert _rows(runtime.engine) == []


def test_updates_of_one_entity_coalesce_and_creates_are_queued_once(runtime, sandbox, tenant, clock):
    (first,) = job_updates(sandbox, tenant, 1, budget="100.00")
    second = dict(first, fields={"DueDate": "2026-12-24"})
    third = dict(first, fields={"Budget": "300.00"})
    creates = timesheet_creates(sandbox, tenant, 2, clock.now().date())
    result = enqueue(runtime.engine, tenant, [first, *creates], clock=clock)
    assert (result.added, result.coalesced, result.duplicates) == (3, 0, 0)
    result = enqueue(runtime.engine, tenant, [second, third, *creates], clock=clock)
    assert (result.added, result.coalesced, result.duplicates) == (0, 2, 2)
    rows = _rows(runtime.engine)
    assert len(rows) == 3
    job = rows[0]
    assert json.loads(job.payload) == {"ID": first["key"], "Budget": "300.00", "DueDate": "2026-12-24"}
    assert job.coalesced == 2


def test_claims_follow_priority_then_age_and_skip_held_items(runtime, sandbox, tenant, clock):
    changes = task_updates(sandbox, tenant, 2) + job_updates(sandbox, tenant, 2)
    changes += timesheet_creates(sandbox, tenant, 2, clock.now().date())
    enqueue(runtime.engine, tenant, changes, clock=clock)
    now = clock.now()
    claimed = [Q.claim_next(runtime.engine, tenant, f"w{n}", now, LEASE) for n in range(7)]
    assert [c.kind for c in claimed[:6]] == ["timesheet", "timesheet", "job", "job", "task", "task"]
    assert claimed[6] is None  # all six are held by their claimers' leases
    later = now + LEASE + timedelta(seconds=1)
    assert Q.claim_next(runtime.engine, tenant, "w9", later, LEASE).kind == "timesheet"  # a lapsed claim returns


def test_a_later_edit_of_an_entity_waits_for_the_one_in_flight(runtime, sandbox, tenant, clock):
    (first,) = job_updates(sandbox, tenant, 1, budget="100.00")
    enqueue(runtime.engine, tenant, [first], clock=clock)
    now = clock.now()
    item = Q.claim_next(runtime.engine, tenant, "w1", now, LEASE)
    with runtime.engine.begin() as conn:
        Q.mark_sending(conn, item, call_id=None, now=now, lease=LEASE)
    result = enqueue(runtime.engine, tenant, [dict(first, fields={"Budget": "200.00"})], clock=clock)
    assert result.added == 1  # not merged into the item already on its way
    assert Q.claim_next(runtime.engine, tenant, "w2", now, LEASE) is None  # and not sent beside it


def test_expired_sending_becomes_in_doubt_and_is_claimed_first(runtime, sandbox, tenant, clock):
    enqueue(runtime.engine, tenant, job_updates(sandbox, tenant, 1) + timesheet_creates(sandbox, tenant, 1,
            clock.now().date()), clock=clock)
    now = clock.now()
    item = Q.claim_next(runtime.engine, tenant, "w1", now, LEASE)
    with runtime.engine.begin() as conn:
        Q.mark_sending(conn, item, call_id=None, now=now, lease=LEASE)
    later = now + LEASE + timedelta(seconds=1)
    assert Q.recover_expired(runtime.engine, tenant, later) == 1
    again = Q.claim_next(runtime.engine, tenant, "w2", later, LEASE)
    assert (again.item_id, again.status) == (item.item_id, "in_doubt")


def test_v_export_queue_shows_position_and_join_target(runtime, sandbox, tenant, clock):
    enqueue(runtime.engine, tenant, task_updates(sandbox, tenant, 1) + timesheet_creates(sandbox, tenant, 1,
            clock.now().date()), clock=clock)
    with runtime.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT kind, priority_name, queue_position, target_table, status, tenant_name "
            "FROM v_export_queue ORDER BY queue_position")).all()
    assert [tuple(r[:5]) for r in rows] == [
        ("timesheet", "timesheets", 1, "xpm_timesheets", "pending"),
        ("task", "task updates", 2, "xpm_job_tasks", "pending"),
    ]
    assert rows[0].tenant_name
