"""Bulk loads: exact counts, no-op reloads, scoped soft deletes, tenant isolation, atomicity, typed
round-trips and hostile text, on SQLite and PostgreSQL alike (``warehouse_url`` runs each test on both)."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.warehouse import load as load_module
from xpm_pipeline.warehouse import load_writers, pg_bulk
from xpm_pipeline.warehouse.control import metadata
from xpm_pipeline.warehouse.db import make_engine, write_transaction
from xpm_pipeline.warehouse.load import LoadResult, Scope, insert_new_only, load_entity, mark_deleted
from xpm_pipeline.warehouse.schema import ENTITY_TABLES, table_for
from xpm_pipeline.xpm.parse import Rows

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
TENANT, OTHER = "tenant-a", "tenant-b"
HOSTILE = [
    "tab\there",
    "new\nline and\r\ncrlf",
    "back\\slash \\N \\t \\\\",
    "\\N",
    "NULL",
    "",
    "  padded  ",
    'quote " and \' and , comma; semi',
    "unicode: é ß ø 中文 😀 \u200b",
    "x" * 10_000,
]


@pytest.fixture
def engine(warehouse_url):
    """A warehouse with the entity tables (created directly: the migration registry is tested elsewhere)."""
    engine = make_engine(warehouse_url)
    with write_transaction(engine) as conn:
        metadata.create_all(conn, tables=list(ENTITY_TABLES.values()))
    yield engine
    engine.dispose()


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def timesheets(*entries: dict) -> Rows:
    """Timesheet rows with sensible defaults; each entry needs at least ``uuid``."""
    defaults = {
        "job_number": "J000001",
        "task_uuid": None,
        "task_name": "Bookkeeping",
        "staff_uuid": "s-1",
        "entry_date": date(2025, 6, 1),
        "minutes": 60,
        "note": None,
        "billable": True,
        "start_time": None,
        "end_time": None,
        "invoice_task_uuid": None,
    }
    rows = Rows(ENTITIES["timesheet"])
    for entry in entries:
        values = {**defaults, **entry}
        for name in rows.entity.column_names:
            rows.data[name].append(values[name])
    return rows


def load_timesheets(engine, hour: int, *entries: dict, scope: Scope | None = None, tenant: str = TENANT):
    return load_entity(engine, "timesheet", tenant, timesheets(*entries), synced_at=at(hour), delete_missing=scope)


def stored(engine, entity: str = "timesheet", tenant: str = TENANT) -> dict:
    """key -> row mapping (business and pipeline columns) for one tenant."""
    table = table_for(entity)
    key = ENTITIES[entity].key
    with engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.tenant_id == tenant)).mappings().all()
    return {tuple(row[k] for k in key) if len(key) > 1 else row[key[0]]: dict(row) for row in rows}


def row_versions(engine, entity: str = "timesheet") -> dict:
    """PostgreSQL only: each row's xmin (changes whenever a row version is written, even with same values)."""
    table = table_for(entity).name
    with engine.connect() as conn:
        return dict(conn.execute(text(f"SELECT tenant_id || '/' || uuid, xmin::text FROM {table}")).all())


# --- counts and no-op reloads --------------------------------------------------------------------------


def test_insert_then_identical_reload_writes_nothing(engine):
    rows = timesheets({"uuid": "a"}, {"uuid": "b", "note": "hi"}, {"uuid": "c", "billable": None, "minutes": -15})
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)) == LoadResult(inserted=3)
    before = stored(engine)
    versions = row_versions(engine) if engine.dialect.name == "postgresql" else None

    again = load_entity(engine, "timesheet", TENANT, rows, synced_at=at(1), delete_missing=Scope.all())
    assert again == LoadResult(unchanged=3) and again.changed == 0
    assert stored(engine) == before  # no _synced_at bump either
    if versions is not None:
        assert row_versions(engine) == versions  # not even a locked or rewritten row version


def test_updates_are_counted_and_only_changed_rows_get_synced_at(engine):
    load_timesheets(engine, 0, {"uuid": "a"}, {"uuid": "b"}, {"uuid": "c", "note": "x"})
    edited = timesheets({"uuid": "a", "minutes": 61}, {"uuid": "b"}, {"uuid": "c", "note": None}, {"uuid": "d"})
    result = load_entity(engine, "timesheet", TENANT, edited, synced_at=at(1))
    assert result == LoadResult(inserted=1, updated=2, unchanged=1)
    rows = stored(engine)
    assert {k: r["_synced_at"] for k, r in rows.items()} == {"a": at(1), "b": at(0), "c": at(1), "d": at(1)}
    assert rows["a"]["minutes"] == 61 and rows["c"]["note"] is None


def test_full_reread_soft_deletes_missing_rows_and_revives_returning_ones(engine):
    load_timesheets(engine, 0, {"uuid": "a"}, {"uuid": "b"}, {"uuid": "c"})

    gone = load_timesheets(engine, 1, {"uuid": "a"}, scope=Scope.all())
    assert gone == LoadResult(unchanged=1, deleted=2)
    rows = stored(engine)
    assert rows["b"]["_deleted_at"] == rows["c"]["_deleted_at"] == at(1) and rows["a"]["_deleted_at"] is None

    # Already-deleted rows keep their original deletion time.
    again = load_timesheets(engine, 2, {"uuid": "a"}, scope=Scope.all())
    assert again == LoadResult(unchanged=1) and stored(engine)["b"]["_deleted_at"] == at(1)

    back = load_timesheets(engine, 3, {"uuid": "a"}, {"uuid": "b", "minutes": 5})
    assert back == LoadResult(unchanged=1, revived=1)
    rows = stored(engine)
    assert rows["b"]["_deleted_at"] is None and rows["b"]["minutes"] == 5 and rows["b"]["_synced_at"] == at(3)
    assert rows["c"]["_deleted_at"] == at(1)


def test_without_a_scope_nothing_is_deleted(engine):
    load_timesheets(engine, 0, {"uuid": "a"}, {"uuid": "b"})
    assert load_timesheets(engine, 1, {"uuid": "a"}) == LoadResult(unchanged=1)
    assert all(row["_deleted_at"] is None for row in stored(engine).values())


def test_date_window_scope_leaves_rows_outside_it_alone(engine):
    days = {
        "jan": date(2025, 1, 15), "feb1": date(2025, 2, 1), "feb": date(2025, 2, 15),
        "mar": date(2025, 3, 15), "mar31": date(2025, 3, 31), "apr": date(2025, 4, 15),
    }
    load_timesheets(engine, 0, *({"uuid": k, "entry_date": d} for k, d in days.items()))

    window = Scope("entry_date", between=(date(2025, 2, 1), date(2025, 3, 31)))
    result = load_timesheets(engine, 1, {"uuid": "feb", "entry_date": days["feb"]}, scope=window)
    assert result == LoadResult(unchanged=1, deleted=3)  # both bounds are inclusive
    assert {k for k, r in stored(engine).items() if r["_deleted_at"]} == {"feb1", "mar", "mar31"}

    open_ended = Scope("entry_date", between=(date(2025, 4, 1), None))
    assert load_timesheets(engine, 2, scope=open_ended).deleted == 1
    assert {k for k, r in stored(engine).items() if r["_deleted_at"]} == {"feb1", "mar", "mar31", "apr"}


def test_within_scope_deletes_only_tasks_of_the_listed_jobs(engine):
    def task(uuid, job):
        return {"uuid": uuid, "job_uuid": job, "job_number": f"J-{job}", "name": "Task", "estimated_minutes": 30}

    first = pd.DataFrame([task("t1", "j1"), task("t2", "j1"), task("t3", "j2"), task("t4", "j3")])
    for column in ENTITIES["job_task"].column_names:
        first[column] = first.get(column)
    load_entity(engine, "job_task", TENANT, first, synced_at=at(0))

    reread = first[first.uuid.isin(["t1"])]
    scope = Scope("job_uuid", within=["j1", "j2"])
    result = load_entity(engine, "job_task", TENANT, reread, synced_at=at(1), delete_missing=scope)
    assert result == LoadResult(unchanged=1, deleted=2)
    assert {k for k, r in stored(engine, "job_task").items() if r["_deleted_at"]} == {"t2", "t3"}


def test_a_tenants_load_never_touches_another_tenant(engine):
    shared = timesheets({"uuid": "a"}, {"uuid": "b"})
    load_entity(engine, "timesheet", OTHER, shared, synced_at=at(0))
    theirs = stored(engine, tenant=OTHER)

    assert load_entity(engine, "timesheet", TENANT, shared, synced_at=at(1)) == LoadResult(inserted=2)
    edited = timesheets({"uuid": "a", "minutes": 1})
    assert load_entity(engine, "timesheet", TENANT, edited, synced_at=at(2), delete_missing=Scope.all()) == LoadResult(
        updated=1, deleted=1
    )
    assert mark_deleted(engine, "timesheet", TENANT, ["a"], at=at(3)) == 1
    assert insert_new_only(engine, "timesheet", TENANT, timesheets({"uuid": "z"}), synced_at=at(4)).inserted == 1
    assert stored(engine, tenant=OTHER) == theirs


# --- atomicity -----------------------------------------------------------------------------------------


def _fail_after(monkeypatch, owner, name):
    original = getattr(owner, name)

    def run_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("injected failure")

    monkeypatch.setattr(owner, name, run_then_fail)


@pytest.mark.parametrize(
    "step", ["write_diff", "soft_delete", "insert_fresh"], ids=["after-upsert", "after-soft-delete", "after-copy"]
)
def test_a_failure_mid_load_leaves_the_table_exactly_as_before(engine, monkeypatch, step):
    seed = timesheets({"uuid": "a"}, {"uuid": "b"}, {"uuid": "c"})
    tenant = TENANT
    if step == "insert_fresh":
        tenant = "fresh-tenant"  # its first load streams straight into the table
        load_entity(engine, "timesheet", TENANT, seed, synced_at=at(0))
    else:
        load_entity(engine, "timesheet", tenant, seed, synced_at=at(0))
    before = {t: stored(engine, tenant=t) for t in (TENANT, "fresh-tenant")}

    if step == "soft_delete":
        _fail_after(monkeypatch, load_module, "_soft_delete_missing")
    else:
        for cls in (load_writers.SqliteWriter, load_writers.PostgresWriter):
            _fail_after(monkeypatch, cls, step)
    change = timesheets({"uuid": "a", "minutes": 99}, {"uuid": "d"})
    with pytest.raises(RuntimeError, match="injected"):
        load_entity(engine, "timesheet", tenant, change, synced_at=at(1), delete_missing=Scope.all())
    assert {t: stored(engine, tenant=t) for t in (TENANT, "fresh-tenant")} == before


def test_a_value_the_database_refuses_rolls_back_the_whole_load(engine):
    load_entity(engine, "timesheet", TENANT, timesheets({"uuid": "a"}), synced_at=at(0))
    before = stored(engine)
    bad = timesheets({"uuid": "a", "minutes": 5}, {"uuid": "b"}, {"uuid": "c", "minutes": 2**40})
    with pytest.raises(Exception):
        load_entity(engine, "timesheet", TENANT, bad, synced_at=at(1), delete_missing=Scope.all())
    assert stored(engine) == before


# --- values --------------------------------------------------------------------------------------------


def test_hostile_text_round_trips_on_fresh_and_staged_paths(engine):
    rows = timesheets(*({"uuid": f"h{i}", "note": value, "task_name": value} for i, value in enumerate(HOSTILE)))
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)).inserted == len(HOSTILE)
    assert {k: r["note"] for k, r in stored(engine).items()} == {f"h{i}": v for i, v in enumerate(HOSTILE)}
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(1)) == LoadResult(unchanged=len(HOSTILE))

    shifted = HOSTILE[1:] + HOSTILE[:1]
    rows = timesheets(*({"uuid": f"h{i}", "note": value, "task_name": value} for i, value in enumerate(shifted)))
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(2)) == LoadResult(updated=len(HOSTILE))
    assert {k: (r["note"], r["task_name"]) for k, r in stored(engine).items()} == {
        f"h{i}": (v, v) for i, v in enumerate(shifted)
    }


def test_typed_values_round_trip(engine):
    jobs = Rows(ENTITIES["job"])
    budgets = [Decimal("0"), Decimal("-12.5"), Decimal("123456789012.34"), Decimal("1.005"), None]
    for i, budget in enumerate(budgets):
        values = {name: None for name in jobs.entity.column_names}
        values.update(uuid=f"job-{i}", job_number=f"J{i}", name=f"Job {i}", budget=budget,
                      start_date=date(2024, 2, 29) if i % 2 else None, due_date=date(1999, 12, 31))
        for name, value in values.items():
            jobs.data[name].append(value)
    load_entity(engine, "job", TENANT, jobs, synced_at=at(0))
    got = stored(engine, "job")
    assert [got[f"job-{i}"]["budget"] for i in range(5)] == [
        Decimal("0"), Decimal("-12.5"), Decimal("123456789012.34"), Decimal("1.01"), None  # NUMERIC(14, 2) rounding
    ]
    assert got["job-1"]["start_date"] == date(2024, 2, 29) and got["job-0"]["start_date"] is None
    assert load_entity(engine, "job", TENANT, jobs, synced_at=at(1)) == LoadResult(unchanged=5)

    tasks = {
        "uuid": ["t1", "t2"], "job_uuid": ["job-1", "job-1"], "job_number": ["J1", None], "task_uuid": [None, "x"],
        "name": ["A", "B"], "label": [None, "2"], "description": [None, "d"],
        "estimated_minutes": [-(2**31), 2**31 - 1],
        "actual_minutes": [0, -1], "completed": [True, False], "billable": [None, True], "folder": [None, None],
        "start_date": [None, date(2026, 1, 1)], "due_date": [date(2026, 12, 31), None],
    }
    load_entity(engine, "job_task", TENANT, tasks, synced_at=at(0))
    got = stored(engine, "job_task")
    for i, key in enumerate(["t1", "t2"]):
        assert {name: got[key][name] for name in tasks} == {name: values[i] for name, values in tasks.items()}

    clients = {name: [None] for name in ENTITIES["client"].column_names}
    clients.update(
        uuid=["c1"], name=["Client"], is_prospect=[False], is_archived=[True], date_of_birth=[date(1970, 1, 1)]
    )
    load_entity(engine, "client", TENANT, clients, synced_at=at(0))
    row = stored(engine, "client")["c1"]
    assert (row["is_prospect"], row["is_archived"], row["is_deleted"]) == (False, True, None)


def test_a_dataframe_loads_exactly_like_rows(engine):
    rows = timesheets(
        {"uuid": "a", "note": "x", "billable": False, "minutes": -5},
        {"uuid": "b", "note": None, "billable": None, "entry_date": date(2024, 2, 29)},
    )
    load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0))
    frame = rows.to_frame()
    frame["entry_date"] = pd.to_datetime(frame["entry_date"])  # what a comparison in pandas tends to hold
    frame["extra"] = 1  # ignored
    assert load_entity(engine, "timesheet", OTHER, frame, synced_at=at(0)) == LoadResult(inserted=2)
    assert load_entity(engine, "timesheet", OTHER, frame, synced_at=at(1)) == LoadResult(unchanged=2)

    def business(tenant):
        names = ENTITIES["timesheet"].column_names
        return {k: {c: r[c] for c in names} for k, r in stored(engine, tenant=tenant).items()}

    assert business(OTHER) == business(TENANT)


def test_a_key_given_twice_keeps_its_last_row(engine):
    rows = timesheets({"uuid": "a", "minutes": 1}, {"uuid": "b"}, {"uuid": "a", "minutes": 2})
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)) == LoadResult(inserted=2)
    assert stored(engine)["a"]["minutes"] == 2
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(1)) == LoadResult(unchanged=2)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"uuid": None}, "key column"),
        ({"uuid": "a", "note": "nul\x00byte"}, None),
        ({"uuid": "a", "minutes": 2**31}, None),
        ({"uuid": "a", "staff_uuid": "x" * 37}, None),
    ],
    ids=["null-key", "nul-char", "int4-overflow", "too-long-uuid"],
)
def test_values_postgres_refuses_are_refused_on_both_dialects(engine, bad, message):
    load_entity(engine, "timesheet", TENANT, timesheets({"uuid": "seed"}), synced_at=at(0))
    before = stored(engine)
    with pytest.raises(Exception, match=message):
        load_entity(engine, "timesheet", TENANT, timesheets(bad), synced_at=at(1))
    assert stored(engine) == before


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="exactly one"):
        Scope("entry_date")
    with pytest.raises(ValueError, match="needs a column"):
        Scope(within=[1])
    engine = make_engine("sqlite://")
    with pytest.raises(ValueError, match="timezone-aware"):
        load_entity(engine, "timesheet", TENANT, timesheets(), synced_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="no column"):
        load_entity(engine, "timesheet", TENANT, timesheets(), synced_at=T0, delete_missing=Scope("date", within=[1]))
    with pytest.raises(ValueError, match="unknown entity"):
        load_entity(engine, "timesheets", TENANT, timesheets(), synced_at=T0)
    with pytest.raises(ValueError, match="not 'job'"):
        load_entity(engine, "job", TENANT, timesheets(), synced_at=T0)


# --- hourly inserts and explicit deletes ------------------------------------------------------------------


def test_insert_new_only_never_touches_stored_rows(engine):
    load_entity(engine, "timesheet", TENANT, timesheets({"uuid": "a"}, {"uuid": "b"}), synced_at=at(0))
    mark_deleted(engine, "timesheet", TENANT, ["b"], at=at(1))
    before = stored(engine)

    rows = timesheets({"uuid": "a", "minutes": 5}, {"uuid": "b"}, {"uuid": "c"}, {"uuid": "d"})
    assert insert_new_only(engine, "timesheet", TENANT, rows, synced_at=at(2)) == LoadResult(inserted=2, unchanged=2)
    after = stored(engine)
    assert {k: after[k] for k in before} == before
    assert after["c"]["_synced_at"] == at(2) and after["d"]["_deleted_at"] is None
    assert insert_new_only(engine, "timesheet", "new-tenant", rows, synced_at=at(2)) == LoadResult(inserted=4)


def test_mark_deleted_by_single_and_composite_keys(engine):
    load_entity(engine, "timesheet", TENANT, timesheets({"uuid": "a"}, {"uuid": "b"}), synced_at=at(0))
    assert mark_deleted(engine, "timesheet", TENANT, ["a", "missing"], at=at(1)) == 1
    assert mark_deleted(engine, "timesheet", TENANT, ["a"], at=at(2)) == 0
    rows = stored(engine)
    assert rows["a"]["_deleted_at"] == at(1) == rows["a"]["_synced_at"] and rows["b"]["_deleted_at"] is None

    members = {"group_uuid": ["g1", "g1", "g2"], "client_uuid": ["c1", "c2", "c1"]}
    assert load_entity(engine, "client_group_member", TENANT, members, synced_at=at(0)) == LoadResult(inserted=3)
    assert load_entity(engine, "client_group_member", TENANT, members, synced_at=at(1)) == LoadResult(unchanged=3)
    assert mark_deleted(engine, "client_group_member", TENANT, [("g1", "c2"), ("g2", "c2")], at=at(2)) == 1
    deleted = {k for k, r in stored(engine, "client_group_member").items() if r["_deleted_at"]}
    assert deleted == {("g1", "c2")}
    back = load_entity(engine, "client_group_member", TENANT, members, synced_at=at(3))
    assert back == LoadResult(unchanged=2, revived=1)
    with pytest.raises(ValueError, match="2-tuples"):
        mark_deleted(engine, "client_group_member", TENANT, ["g1"], at=at(4))


def test_loads_can_share_the_callers_transaction(engine):
    with write_transaction(engine) as conn:
        load_entity(conn, "timesheet", TENANT, timesheets({"uuid": "a"}), synced_at=at(0))
        load_entity(conn, "timesheet", TENANT, timesheets({"uuid": "a", "minutes": 2}), synced_at=at(1))
        conn.rollback()
    assert stored(engine) == {}


def test_concurrent_loads_of_one_tenant_are_serialised(engine):
    """Both see "no rows yet" without the tenant lock, and the second insert would collide."""
    rows = timesheets(*({"uuid": f"r{i}"} for i in range(300)))
    barrier = threading.Barrier(2)
    results, errors = [], []

    def go():
        try:
            barrier.wait()
            results.append(load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results, key=lambda r: r.inserted) == [LoadResult(unchanged=300), LoadResult(inserted=300)]


# --- PostgreSQL: the empty-table path that rebuilds indexes ------------------------------------------------


def _index_definitions(engine, table: str) -> set:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table})
        return set(rows.all())


@pytest.mark.postgres
def test_first_load_into_an_empty_table_rebuilds_identical_indexes(postgres_url, monkeypatch):
    engine = make_engine(postgres_url)
    with write_transaction(engine) as conn:
        metadata.create_all(conn, tables=list(ENTITY_TABLES.values()))
    monkeypatch.setattr(load_writers, "DEFER_INDEXES_MIN_ROWS", 1)
    indexes = _index_definitions(engine, "xpm_timesheets")
    assert len(indexes) == 4
    dropped = []
    original = pg_bulk._drop_indexes
    monkeypatch.setattr(pg_bulk, "_drop_indexes", lambda conn, table: dropped.append(table) or original(conn, table))

    rows = timesheets(*({"uuid": f"r{i:03d}", "minutes": i} for i in range(200)))
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)) == LoadResult(inserted=200)
    assert dropped == ["xpm_timesheets"] and _index_definitions(engine, "xpm_timesheets") == indexes
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(1)) == LoadResult(unchanged=200)
    with pytest.raises(Exception, match="duplicate key"):  # the primary key is enforced again
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO xpm_timesheets SELECT * FROM xpm_timesheets LIMIT 1"))

    # A failure after the indexes were dropped rolls the drop back too.
    _fail_after(monkeypatch, pg_bulk, "copy_rows")
    job = {n: [None] for n in ENTITIES["job"].column_names} | {"uuid": ["j"], "job_number": ["J"], "name": ["n"]}
    with pytest.raises(RuntimeError, match="injected"):
        load_entity(engine, "job", TENANT, job, synced_at=at(0))
    assert len(_index_definitions(engine, "xpm_jobs")) == 3
    assert stored(engine, "job") == {}
    engine.dispose()


@pytest.mark.postgres
def test_indexes_something_relies_on_are_kept(postgres_url, monkeypatch):
    """A view grouping by the primary key depends on the constraint: it must survive the load."""
    engine = make_engine(postgres_url)
    with write_transaction(engine) as conn:
        metadata.create_all(conn, tables=list(ENTITY_TABLES.values()))
        conn.execute(text(
            "CREATE VIEW v_minutes AS SELECT t.tenant_id, t.uuid, t.note, sum(t.minutes) AS minutes "
            "FROM xpm_timesheets t GROUP BY t.tenant_id, t.uuid"
        ))
    monkeypatch.setattr(load_writers, "DEFER_INDEXES_MIN_ROWS", 1)
    indexes = _index_definitions(engine, "xpm_timesheets")
    rows = timesheets(*({"uuid": f"r{i}", "minutes": i} for i in range(50)))
    assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)) == LoadResult(inserted=50)
    assert _index_definitions(engine, "xpm_timesheets") == indexes
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(minutes) FROM v_minutes")).scalar() == sum(range(50))
    engine.dispose()


@pytest.mark.postgres
def test_a_busy_empty_table_is_loaded_without_taking_it_over(postgres_url, monkeypatch):
    engine = make_engine(postgres_url)
    with write_transaction(engine) as conn:
        metadata.create_all(conn, tables=list(ENTITY_TABLES.values()))
    monkeypatch.setattr(load_writers, "DEFER_INDEXES_MIN_ROWS", 1)
    monkeypatch.setattr(pg_bulk, "LOCK_WAIT", "50ms")
    with engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM xpm_timesheets"))  # an open transaction holding ACCESS SHARE
        rows = timesheets(*({"uuid": f"r{i}"} for i in range(10)))
        assert load_entity(engine, "timesheet", TENANT, rows, synced_at=at(0)) == LoadResult(inserted=10)
        reader.rollback()
    assert len(stored(engine)) == 10
    engine.dispose()


# --- property: random loads against a model ---------------------------------------------------------------

KEYS = [f"k{i}" for i in range(4)]
DAYS = [date(2025, 1, 1) + timedelta(days=30 * i) for i in range(3)]
JOBS = ["J1", "J2", "J3"]
TEXT = st.one_of(
    st.sampled_from(HOSTILE[:-1]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)
VALUES = st.fixed_dictionaries(
    {
        "job_number": st.sampled_from(JOBS),
        "task_uuid": st.none() | st.sampled_from(["t1", "t2"]),
        "task_name": st.none() | TEXT,
        "staff_uuid": st.sampled_from(["s1", "s2"]),
        "entry_date": st.sampled_from(DAYS),
        "minutes": st.sampled_from([0, 15, -30]) | st.integers(-(2**31), 2**31 - 1),
        "note": st.none() | TEXT,
        "billable": st.none() | st.booleans(),
        "start_time": st.none() | st.just("09:00"),
        "end_time": st.none(),
        "invoice_task_uuid": st.none() | st.just("inv"),
    }
)
ROWS = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([0, 1])), max_size=8)  # (key, version)
SCOPES = st.one_of(
    st.none(),
    st.just(Scope.all()),
    st.tuples(st.none() | st.sampled_from(DAYS), st.none() | st.sampled_from(DAYS)).map(
        lambda b: Scope("entry_date", between=b)
    ),
    st.lists(st.sampled_from(JOBS), max_size=2).map(lambda jobs: Scope("job_number", within=jobs)),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("load"), ROWS, SCOPES),
        st.tuples(st.just("insert_new_only"), ROWS, st.none()),
        st.tuples(st.just("mark_deleted"), st.lists(st.sampled_from(KEYS + ["absent"]), max_size=3), st.none()),
    ),
    min_size=1,
    max_size=5,
)


def _in_scope(scope: Scope, values: dict) -> bool:
    if scope.is_all:
        return True
    if scope.between is not None:
        low, high = scope.between
        day = values["entry_date"]
        return (low is None or low <= day) and (high is None or day <= high)
    return values[scope.column] in scope.within


def _model_step(model: dict, kind: str, payload, scope, when: datetime) -> LoadResult | int:
    """What the warehouse must look like after one step, and the counts the step must report."""
    if kind == "mark_deleted":
        marked = [k for k in dict.fromkeys(payload) if k in model and model[k]["_deleted_at"] is None]
        for key in marked:
            model[key].update(_deleted_at=when, _synced_at=when)
        return len(marked)
    rows = dict(payload)  # the last occurrence of a key wins
    counts = dict.fromkeys(["inserted", "updated", "unchanged", "deleted", "revived"], 0)
    for key, values in rows.items():
        old = model.get(key)
        if old is None:
            counts["inserted"] += 1
        elif kind == "insert_new_only":
            counts["unchanged"] += 1
            continue
        elif old["_deleted_at"] is not None:
            counts["revived"] += 1
        elif {c: old[c] for c in values} != values:
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
            continue
        model[key] = {**values, "_synced_at": when, "_deleted_at": None}
    if scope is not None:
        for key, row in model.items():
            if key not in rows and row["_deleted_at"] is None and _in_scope(scope, row):
                row.update(_deleted_at=when, _synced_at=when)
                counts["deleted"] += 1
    return LoadResult(**counts)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=st.lists(st.tuples(VALUES, VALUES), min_size=len(KEYS), max_size=len(KEYS)), steps=STEPS)
def test_random_loads_match_a_model(engine, versions, steps):
    """Two versions of each row, so reloads are often identical, edits revert and deleted rows return."""
    tenant = f"prop-{uuid4().hex}"  # each example has the shared database to itself
    model: dict = {}
    for number, (kind, payload, scope) in enumerate(steps):
        when = at(number)
        if kind != "mark_deleted":
            payload = [(key, versions[KEYS.index(key)][version]) for key, version in payload]
        expected = _model_step(model, kind, payload, scope, when)
        if kind == "mark_deleted":
            got = mark_deleted(engine, "timesheet", tenant, payload, at=when)
        else:
            rows = timesheets(*({"uuid": key, **values} for key, values in payload))
            if kind == "load":
                got = load_entity(engine, "timesheet", tenant, rows, synced_at=when, delete_missing=scope)
            else:
                got = insert_new_only(engine, "timesheet", tenant, rows, synced_at=when)
        assert got == expected, (kind, scope)
        rows = stored(engine, tenant=tenant).items()
        actual = {key: {c: v for c, v in row.items() if c not in ("tenant_id", "uuid")} for key, row in rows}
        assert actual == model
