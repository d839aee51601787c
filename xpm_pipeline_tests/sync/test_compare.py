"""The nightly comparison: every normalisation rule, the shape of the result, and property tests that
it finds exactly the edits made (and nothing when nothing changed), whatever types the warehouse
read gives back."""

from __future__ import annotations

import uuid as uuidlib
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpm_pipeline.entities import ENTITIES, JOB, TIMESHEET, ColumnType
from xpm_pipeline.sync import compare as compare_module
from xpm_pipeline.sync.compare import FIELD, NEW_VALUE, OLD_VALUE, compare_entity, compare_frames
from xpm_pipeline.xpm.parse import Rows

T = ColumnType
NAMES = TIMESHEET.column_names
TYPES = {c.name: c.type for c in TIMESHEET.columns}
U1, U2, U3, U4 = (str(uuidlib.UUID(int=i + 1, version=4)) for i in range(4))


def entry(uuid: str = U1, **fields) -> dict:
    """One XPM time entry as ``Rows`` would hold it (Python values, None when absent)."""
    row = {
        "uuid": uuid,
        "job_number": "J000042",
        "task_uuid": U3,
        "task_name": "Year-end review",
        "staff_uuid": U4,
        "entry_date": date(2026, 8, 14),
        "minutes": -90,
        "note": "Asset register",
        "billable": True,
        "start_time": "09:00",
        "end_time": "10:30",
        "invoice_task_uuid": None,
    }
    row.update(fields)
    return row


def xpm_frame(rows: list[dict]) -> pd.DataFrame:
    """The frame XPM data arrives as: ``Rows.to_frame()``."""
    return Rows(TIMESHEET, {name: [row[name] for row in rows] for name in NAMES}).to_frame()


def with_column(frame: pd.DataFrame, name: str, values) -> pd.DataFrame:
    frame = frame.copy()
    frame[name] = values
    return frame


def field_changes(result) -> set[tuple]:
    return set(result.changes[[*result.key, FIELD, OLD_VALUE, NEW_VALUE]].itertuples(index=False, name=None))


def assert_same(old: pd.DataFrame, new: pd.DataFrame) -> None:
    result = compare_entity(TIMESHEET, old, new)
    assert result.counts == {"added": 0, "deleted": 0, "changed": 0, "unchanged": len(new), "fields_changed": 0}
    assert not result


# --- normalisation, rule by rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "warehouse",
    [
        pd.Series([-90, 60], dtype="int64"),
        pd.Series([-90, 60], dtype="Int64"),
        pd.Series([-90.0, 60.0], dtype="float64"),
        pd.Series([np.int64(-90), np.int32(60)], dtype=object),
        pd.Series(["-90", "60"], dtype=object),
        pd.Series([-90, 60], dtype="int64[pyarrow]"),
    ],
    ids=["int64", "Int64", "float64", "numpy-objects", "text", "arrow"],
)
def test_integers_compare_by_value_whatever_their_dtype(warehouse):
    new = xpm_frame([entry(U1, minutes=-90), entry(U2, minutes=60)])
    assert_same(with_column(new, "minutes", warehouse), new)


def test_an_integer_change_is_reported_as_text():
    old = with_column(xpm_frame([entry(minutes=60)]), "minutes", pd.Series([60], dtype="Int64"))
    result = compare_entity(TIMESHEET, old, xpm_frame([entry(minutes=-60)]))
    assert field_changes(result) == {(U1, "minutes", "60", "-60")}


def test_an_integer_column_refuses_fractions_instead_of_rounding():
    new = xpm_frame([entry(minutes=60)])
    with pytest.raises(ValueError, match="minutes.*60.5"):
        compare_entity(TIMESHEET, with_column(new, "minutes", [60.5]), new)
    with pytest.raises(ValueError, match="minutes"):
        compare_entity(TIMESHEET, with_column(new, "minutes", pd.Series([Decimal("60.5")], dtype=object)), new)


@pytest.mark.parametrize(
    "warehouse",
    [
        pd.Series(pd.to_datetime(["2026-08-14", "2025-01-31"])),  # datetime64
        pd.Series([pd.Timestamp("2026-08-14"), pd.Timestamp("2025-01-31")], dtype=object),
        pd.Series([datetime(2026, 8, 14), datetime(2025, 1, 31)], dtype=object),
        pd.Series(["2026-08-14", "2025-01-31"]),
        pd.Series(["2026-08-14T00:00:00", "2025-01-31 00:00:00"]),
        pd.Series(["20260814", "20250131"]),
        pd.Series(pd.to_datetime(["2026-08-14 10:30:00", "2025-01-31 23:59:59"])),  # only the calendar date counts
        pd.Series(pd.to_datetime(["2026-08-14 10:30", "2025-01-31 23:00"]).tz_localize("Pacific/Auckland")),
        pd.Series([date(2026, 8, 14), date(2025, 1, 31)], dtype="date32[pyarrow]"),
    ],
    ids=["datetime64", "Timestamp", "datetime", "iso", "iso-midnight", "xpm-compact", "time-of-day", "aware", "arrow"],
)
def test_dates_compare_by_calendar_day_whatever_their_form(warehouse):
    new = xpm_frame([entry(U1, entry_date=date(2026, 8, 14)), entry(U2, entry_date=date(2025, 1, 31))])
    assert_same(with_column(new, "entry_date", warehouse), new)


def test_a_date_change_is_reported_in_iso_form():
    old = with_column(xpm_frame([entry()]), "entry_date", pd.to_datetime(["2026-08-14"]))
    result = compare_entity(TIMESHEET, old, xpm_frame([entry(entry_date=date(2026, 8, 15))]))
    assert field_changes(result) == {(U1, "entry_date", "2026-08-14", "2026-08-15")}


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA, pd.NaT, float("nan")], ids=repr)
def test_every_kind_of_missing_is_equal_to_every_other(missing):
    rows = [entry(U1, note=None, billable=None, task_uuid=None), entry(U2, note="x")]
    new = xpm_frame(rows)
    old = new.copy()
    for name in ("note", "billable", "task_uuid"):
        old[name] = pd.Series([missing, new[name][1]], dtype=object)
    assert_same(old, new)
    # and in the nullable dtypes a warehouse read gives
    typed = with_column(new, "billable", pd.array([None, True], dtype="boolean"))
    typed = with_column(typed, "note", pd.array([None, "x"], dtype="string"))
    assert_same(typed, new)


def test_missing_to_value_and_back_are_changes_with_null_text():
    old = xpm_frame([entry(U1, note=None), entry(U2, billable=False)])
    new = xpm_frame([entry(U1, note="now noted"), entry(U2, billable=None)])
    assert field_changes(compare_entity(TIMESHEET, old, new)) == {
        (U1, "note", None, "now noted"),
        (U2, "billable", "false", None),
    }


@pytest.mark.parametrize(
    "warehouse",
    [
        pd.Series([True, False], dtype=bool),
        pd.Series([1, 0], dtype="int64"),
        pd.Series([1.0, 0.0]),
        pd.Series([np.True_, 0], dtype=object),
        pd.Series(["true", "FALSE"], dtype=object),
        pd.Series(["Yes", "no"], dtype=object),
        pd.array([True, False], dtype="boolean"),
    ],
    ids=["bool", "int", "float", "numpy-objects", "true-false", "yes-no", "boolean"],
)
def test_booleans_compare_by_truth_whatever_their_form(warehouse):
    new = xpm_frame([entry(U1, billable=True), entry(U2, billable=False)])
    assert_same(with_column(new, "billable", warehouse), new)


def test_a_boolean_column_refuses_other_values():
    new = xpm_frame([entry()])
    for bad in (2, "maybe"):
        with pytest.raises(ValueError, match="billable"):
            compare_entity(TIMESHEET, with_column(new, "billable", pd.Series([bad], dtype=object)), new)


@pytest.mark.parametrize(
    "edited", ["Asset register ", " Asset register", "asset register", "Asset  register", "Asset register\n", ""]
)
def test_text_is_compared_exactly(edited):
    old = xpm_frame([entry(note="Asset register")])
    result = compare_entity(TIMESHEET, old, xpm_frame([entry(note=edited)]))
    assert field_changes(result) == {(U1, "note", "Asset register", edited)}


def test_text_compares_equal_across_string_dtypes():
    new = xpm_frame([entry(U1, note="Ünïcödé ✓ 😀"), entry(U2, note=None)])
    for dtype in (object, "string", "str"):
        assert_same(with_column(new, "note", pd.Series(["Ünïcödé ✓ 😀", None], dtype=dtype)), new)
    assert_same(with_column(new, "note", pd.Series(["Ünïcödé ✓ 😀".encode(), None], dtype=object)), new)


@pytest.mark.parametrize("dtype", [object, "string[python]", "str"])
def test_text_after_a_nul_character_counts(dtype):
    """pandas hashes all-text object columns as C strings ("a\\x00b" == "a"); the comparison must not."""
    notes = ["a\x00b", "\x00", "a", ""]
    new = xpm_frame([entry(str(uuidlib.UUID(int=10 + i, version=4)), note=n) for i, n in enumerate(notes)])
    old = with_column(new, "note", pd.Series(["a", "", "a\x00c", "\x00"], dtype=dtype))
    result = compare_entity(TIMESHEET, old, with_column(new, "note", pd.Series(notes, dtype=dtype)))
    assert result.changes[[OLD_VALUE, NEW_VALUE]].values.tolist() == [
        ["a", "a\x00b"],
        ["", "\x00"],
        ["a\x00c", "a"],
        ["\x00", ""],
    ]
    assert_same(with_column(new, "note", pd.Series(notes, dtype=dtype)), new)


def test_uuids_compare_without_case_and_as_uuid_objects():
    rows = [entry(U1, task_uuid=U3), entry(U2, task_uuid=None)]
    new = xpm_frame(rows)
    old = new.copy()
    old["uuid"] = pd.Series([uuidlib.UUID(U1), U2.upper()], dtype=object)  # keys too
    old["task_uuid"] = pd.Series([U3.upper(), None], dtype=object)
    assert_same(old, new)
    upper = with_column(new, "task_uuid", new["task_uuid"].str.upper())  # pandas string dtype path
    assert_same(upper, new)
    assert field_changes(compare_entity(TIMESHEET, upper, xpm_frame([entry(U1, task_uuid=U4), rows[1]]))) == {
        (U1, "task_uuid", U3, U4)
    }


def job(uuid: str, **fields) -> dict:
    row = dict.fromkeys(JOB.column_names)
    row.update(uuid=uuid, job_number="J1", name="Accounts", budget=Decimal("1200.50"), start_date=date(2026, 7, 1))
    row.update(fields)
    return row


def job_frame(rows) -> pd.DataFrame:
    return Rows(JOB, {name: [row[name] for row in rows] for name in JOB.column_names}).to_frame()


def test_money_compares_by_exact_decimal_value():
    new = job_frame([job(U1, budget=Decimal("1200.50")), job(U2, budget=Decimal("0")), job(U3, budget=Decimal("100"))])
    forms = [
        pd.Series([Decimal("1200.5"), Decimal("0.00"), Decimal("1E+2")], dtype=object),
        pd.Series([1200.5, -0.0, 100.0]),
        pd.Series(["1200.500", "0", " 100 "], dtype=object),
        pd.Series([Decimal("1200.50"), 0, np.int64(100)], dtype=object),
    ]
    for form in forms:
        result = compare_entity(JOB, with_column(new, "budget", form), new)
        assert not result, form
    edited = job_frame([job(U1, budget=Decimal("1200.51")), job(U2, budget=0.1), job(U3, budget=None)])
    assert field_changes(compare_entity(JOB, new, edited)) == {
        (U1, "budget", "1200.50", "1200.51"),
        (U2, "budget", "0.00", "0.10"),
        (U3, "budget", "100.00", None),
    }


def test_money_keeps_digits_beyond_cents():
    old = job_frame([job(U1, budget=Decimal("10.005"))])
    result = compare_entity(JOB, old, job_frame([job(U1, budget=Decimal("10.01"))]))
    assert field_changes(result) == {(U1, "budget", "10.005", "10.01")}


def test_datetimes_compare_by_practice_local_instant():
    new = pd.DataFrame({"id": [1, 2], "at": [datetime(2026, 8, 14, 9, 30), datetime(2026, 8, 14, 0, 0)]})
    types = {"id": T.INT, "at": T.DATETIME}
    for form in (
        pd.to_datetime(["2026-08-14 09:30", "2026-08-14"], format="ISO8601"),
        pd.Series(["2026-08-14T09:30:00", "2026-08-14"], dtype=object),
        pd.Series([pd.Timestamp("2026-08-14 09:30"), date(2026, 8, 14)], dtype=object),
    ):
        assert not compare_frames(with_column(new, "at", form), new, key="id", columns=["at"], types=types)
    moved = with_column(new, "at", [datetime(2026, 8, 14, 9, 30, 0, 1), datetime(2026, 8, 14)])
    assert field_changes(compare_frames(new, moved, key="id", columns=["at"], types=types)) == {
        (1, "at", "2026-08-14T09:30:00", "2026-08-14T09:30:00.000001")
    }
    utc = pd.to_datetime(["2026-08-14 09:30", "2026-08-14"], format="ISO8601").tz_localize("UTC")
    aware = with_column(new, "at", utc)
    with pytest.raises(ValueError, match="offset"):
        compare_frames(aware, new, key="id", columns=["at"], types=types)


def test_types_are_inferred_when_not_given():
    days = pd.to_datetime(["2026-01-01", "2026-01-02"])
    old = pd.DataFrame({"k": ["a", "b"], "n": [1, 2], "d": days, "t": ["x", "y"]})
    new = pd.DataFrame({"k": ["b", "a"], "n": [2.0, 1.0], "d": [date(2026, 1, 2), date(2026, 1, 1)], "t": ["y", "x "]})
    result = compare_frames(old, new, key="k", columns=["n", "d", "t"])
    assert field_changes(result) == {("a", "t", "x", "x ")}


# --- the result --------------------------------------------------------------------------------------


def test_added_deleted_changed_and_changes():
    old = xpm_frame([entry(U1), entry(U2), entry(U3)])
    new = xpm_frame([entry(U4, minutes=5), entry(U3, note="edited", billable=False), entry(U1)])
    result = compare_entity(TIMESHEET, old, new)
    assert result.key == ("uuid",)
    assert result.added["uuid"].tolist() == [U4] and result.added["minutes"].tolist() == [5]
    assert result.deleted.columns.tolist() == ["uuid"] and result.deleted["uuid"].tolist() == [U2]
    assert result.changed["uuid"].tolist() == [U3] and result.changed["note"].tolist() == ["edited"]
    assert result.changes.columns.tolist() == ["uuid", FIELD, OLD_VALUE, NEW_VALUE]
    assert result.changes.values.tolist() == [
        [U3, "note", "Asset register", "edited"],
        [U3, "billable", "true", "false"],
    ]
    assert result.counts == {"added": 1, "deleted": 1, "changed": 1, "unchanged": 1, "fields_changed": 2}
    assert result


def test_changes_follow_new_row_order_then_column_order():
    old = xpm_frame([entry(U1), entry(U2), entry(U3)])
    new = xpm_frame([entry(U3, end_time="11:00", job_number="J9"), entry(U1, note="n"), entry(U2, minutes=1)])
    result = compare_entity(TIMESHEET, old, new)
    assert [(k, f) for k, f, *_ in result.changes.values.tolist()] == [
        (U3, "job_number"),
        (U3, "end_time"),
        (U1, "note"),
        (U2, "minutes"),
    ]
    assert result.changed["uuid"].tolist() == [U3, U1, U2]


def test_composite_keys_and_only_keys():
    old = pd.DataFrame({"group_uuid": [U1, U1, U2], "client_uuid": [U3, U4, U3]})
    new = pd.DataFrame({"group_uuid": [U1, U2, U2], "client_uuid": [U3, U3, U4]})
    result = compare_entity("client_group_member", old, new)
    assert result.added.values.tolist() == [[U2, U4]]
    assert result.deleted.values.tolist() == [[U1, U4]]
    assert result.counts["unchanged"] == 2

    old = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1, 2, 3]})
    new = pd.DataFrame({"a": [2, 1, 1], "b": ["x", "y", "x"], "v": [3, 20, 1]})
    result = compare_frames(old, new, key=["a", "b"], columns=["v"], types={"a": T.INT, "b": T.TEXT, "v": T.INT})
    assert field_changes(result) == {(1, "y", "v", "2", "20")}


def test_empty_frames():
    empty = xpm_frame([])
    assert compare_entity(TIMESHEET, empty, empty).counts["unchanged"] == 0
    one = xpm_frame([entry()])
    assert compare_entity(TIMESHEET, empty, one).added["uuid"].tolist() == [U1]
    assert compare_entity(TIMESHEET, one, empty).deleted["uuid"].tolist() == [U1]


def test_bad_keys_and_columns_are_refused():
    one = xpm_frame([entry()])
    with pytest.raises(ValueError, match="duplicated keys"):
        compare_entity(TIMESHEET, xpm_frame([entry(U1), entry(U1.upper())]), one)
    with pytest.raises(ValueError, match="without a key"):
        compare_entity(TIMESHEET, one, with_column(one, "uuid", [None]))
    with pytest.raises(KeyError, match="note"):
        compare_entity(TIMESHEET, one.drop(columns="note"), one)
    with pytest.raises(ValueError, match="also listed"):
        compare_frames(one, one, key="uuid", columns=["uuid"])


def test_a_hash_difference_alone_never_reports_a_change(monkeypatch):
    """Even if every row hashed differently, only fields that differ are reported."""
    rows = [entry(U1), entry(U2), entry(U3, note=None)]
    scramble = np.random.default_rng(0)

    def every_row_differs(hashes, ids, scratch):
        hashes[:] = scramble.integers(0, 2**63, len(hashes), dtype=np.uint64)

    monkeypatch.setattr(compare_module, "_fold", every_row_differs)
    result = compare_entity(TIMESHEET, xpm_frame(rows), xpm_frame([rows[2], rows[0], entry(U2, minutes=1)]))
    assert field_changes(result) == {(U2, "minutes", "-90", "1")}
    assert result.counts["unchanged"] == 2


@pytest.mark.parametrize("name", sorted(ENTITIES))
def test_every_registry_entity_compares(name):
    entity = ENTITIES[name]
    sample = {
        T.TEXT: ["a", "b ", None],
        T.UUID: [U1, U2, None],
        T.INT: [1, -2, None],
        T.MONEY: [Decimal("1.50"), Decimal("-2"), None],
        T.DATE: [date(2026, 1, 1), date(1999, 12, 31), None],
        T.DATETIME: [datetime(2026, 1, 1, 9), datetime(1999, 12, 31), None],
        T.BOOL: [True, False, None],
        T.YESNO: [True, False, None],
    }
    keys = [str(uuidlib.UUID(int=i, version=4)) for i in range(1, 4)]
    data = {c.name: (keys if c.key else sample[c.type]) for c in entity.columns}
    old = Rows(entity, data).to_frame()
    assert not compare_entity(entity, old, old.iloc[::-1])
    if len(entity.columns) > len(entity.key):
        column = next(c for c in entity.columns if not c.key)
        new = with_column(old, column.name, list(reversed(sample[column.type])))
        result = compare_entity(entity, old, new)
        assert result.counts["changed"] == 2 and set(result.changes[FIELD]) == {column.name}


# --- properties --------------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=8)  # unicode, whitespace, "" (not missing)
uuids = st.uuids().map(str)
VALUES = {
    "uuid": uuids,
    "job_number": texts,
    "task_uuid": st.none() | uuids,
    "task_name": st.none() | texts,
    "staff_uuid": uuids,
    "entry_date": st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)),
    "minutes": st.integers(min_value=-(10**6), max_value=10**6),
    "note": st.none() | texts,
    "billable": st.none() | st.booleans(),
    "start_time": st.none() | st.sampled_from(["09:00", "10:30", " 09:00"]),
    "end_time": st.none() | texts,
    "invoice_task_uuid": st.none() | uuids,
}
# Few distinct values, so that edits often land on a value another row (or a missing one) has.
small = {
    **VALUES,
    "job_number": st.sampled_from(["J1", "J2", "J2 "]),
    "task_uuid": st.sampled_from([None, U1, U2]),
    "task_name": st.sampled_from([None, "Review", "review"]),
    "entry_date": st.sampled_from([date(2026, 1, 1), date(2026, 1, 2)]),
    "minutes": st.sampled_from([-1, 0, 1]),
    "note": st.sampled_from([None, "", " ", "a", "a "]),
    "invoice_task_uuid": st.sampled_from([None, U3]),
}


@st.composite
def entries(draw, min_size=0, max_size=25):
    keys = draw(st.lists(uuids, min_size=min_size, max_size=max_size, unique=True))
    values = small if draw(st.booleans()) else VALUES
    return [{"uuid": k, **{name: draw(values[name]) for name in NAMES[1:]}} for k in keys]


def _missing(draw):
    return draw(st.sampled_from([None, np.nan, pd.NA]))


def as_read_from_warehouse(draw, rows: list[dict]) -> pd.DataFrame:
    """The rows as a database read might type them, column by column."""
    frame = {}
    for name in NAMES:
        values = [row[name] for row in rows]
        type_ = TYPES[name]
        how = draw(st.integers(min_value=0, max_value=5))
        gap = _missing(draw)
        if type_ in (T.TEXT, T.UUID):
            if type_ is T.UUID and how == 4:
                values = [v if v is None else v.upper() for v in values]
            if type_ is T.UUID and how == 5:
                values = [v if v is None else uuidlib.UUID(v) for v in values]
            if how in (1, 5):  # Python objects, with any kind of missing
                frame[name] = pd.Series([gap if v is None else v for v in values], dtype=object)
            else:
                frame[name] = pd.Series(values, dtype={0: None, 2: "string"}.get(how, "str"))
        elif type_ is T.INT:
            frame[name] = [
                pd.Series(values, dtype="int64"),
                pd.Series(values, dtype="Int64"),
                pd.Series(values, dtype="float64"),
                pd.Series([np.int64(v) for v in values], dtype=object),
                pd.Series([str(v) for v in values], dtype=object),
                pd.Series(values, dtype="int64[pyarrow]"),
            ][how]
        elif type_ is T.DATE:
            frame[name] = [
                pd.Series(values, dtype=object),
                pd.Series(pd.to_datetime(values), dtype="datetime64[ns]"),
                pd.Series([pd.Timestamp(v) for v in values], dtype=object),
                pd.Series([v.isoformat() for v in values], dtype=object),
                pd.Series([f"{v.isoformat()}T00:00:00" for v in values]),
                pd.Series([datetime.combine(v, datetime.min.time()) + timedelta(hours=13) for v in values]),
            ][how]
        else:  # BOOL
            frame[name] = [
                pd.Series([gap if v is None else v for v in values], dtype=object),
                pd.Series(values, dtype="boolean"),
                pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64"),
                pd.Series([gap if v is None else int(v) for v in values], dtype=object),
                pd.Series([None if v is None else str(v).lower() for v in values], dtype=object),
                pd.Series([None if v is None else ("Yes" if v else "No") for v in values], dtype=object),
            ][how]
    return pd.DataFrame(frame)


def text_of(value) -> str | None:
    """The expected audit text, written independently of the module under test."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_finds_exactly_the_edits_made(data):
    draw = data.draw
    old_rows = draw(entries())
    new_rows = {row["uuid"]: dict(row) for row in old_rows}
    # delete some rows
    deleted = set(draw(st.sets(st.sampled_from([r["uuid"] for r in old_rows]))) if old_rows else set())
    for key in deleted:
        del new_rows[key]
    # change any field of any remaining rows, to or from missing too
    for key in list(new_rows):
        for name in draw(st.sets(st.sampled_from(NAMES[1:]), max_size=3)):
            new_rows[key][name] = draw(VALUES[name] if draw(st.booleans()) else small[name])
    # add rows with keys the old rows never had
    taken = {r["uuid"] for r in old_rows}
    added = [r for r in draw(entries(max_size=5)) if r["uuid"] not in taken]
    final = list(new_rows.values()) + added
    final = [final[i] for i in draw(st.permutations(range(len(final))))]

    old = as_read_from_warehouse(draw, old_rows)
    old = old.iloc[draw(st.permutations(range(len(old))))] if len(old) else old
    result = compare_entity(TIMESHEET, old, xpm_frame(final))

    before = {r["uuid"]: r for r in old_rows}
    expected = {
        (row["uuid"], name, text_of(before[row["uuid"]][name]), text_of(row[name]))
        for row in final
        if row["uuid"] in before
        for name in NAMES[1:]
        if before[row["uuid"]][name] != row[name]
    }
    assert set(result.added["uuid"]) == {r["uuid"] for r in added}
    assert {str(k).lower() for k in result.deleted["uuid"]} == deleted  # as the warehouse spells them
    assert set(result.changed["uuid"]) == {k for k, *_ in expected}
    assert field_changes(result) == expected
    assert len(result.changes) == len(expected)
    assert result.counts["unchanged"] == len(final) - len(added) - len({k for k, *_ in expected})


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_frame_equals_its_shuffled_retyped_self(data):
    rows = data.draw(entries())
    new = xpm_frame(rows)
    assert_same(new, new)
    old = as_read_from_warehouse(data.draw, rows)
    if len(old):
        old = old.iloc[data.draw(st.permutations(range(len(old))))]
    assert_same(old, new)
    assert_same(new, old)


@settings(max_examples=75, deadline=None)
@given(st.data())
def test_one_changed_field_always_changes_the_row_hash(data):
    """The folding is a chain of bijections: a single-field change cannot be hidden by the hash, and
    an unchanged row is never a suspect. (Spies on which rows reach the field-by-field step.)"""
    rows = data.draw(entries(min_size=1))
    index = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    name = data.draw(st.sampled_from(NAMES[1:]))
    edited = [dict(r) for r in rows]
    edited[index][name] = data.draw(VALUES[name].filter(lambda v: v != rows[index][name]))
    suspects = []
    field_changes_of = compare_module._field_changes

    def spy(old, new, old_rows, new_rows, *rest):
        suspects.extend(new_rows.tolist())
        return field_changes_of(old, new, old_rows, new_rows, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_module, "_field_changes", spy)
        compare_entity(TIMESHEET, xpm_frame(rows), xpm_frame(edited))
    assert suspects == [index]
