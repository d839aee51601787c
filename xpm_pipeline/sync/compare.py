"""Exact, keyed, field-by-field comparison of two versions of an entity's rows.

Why: XPM time entries have no modified timestamp and no deleted flag, so every night the pipeline
re-reads 15 months of them (about a million rows) and compares every field with what the warehouse
holds. ``compare_entity(TIMESHEET, warehouse_rows, xpm_rows)`` says which entries were added, deleted
or changed, and lists every changed field as text for the ``xpm_timesheet_changes`` audit table.

Equal values must compare equal whichever side they came from. XPM gives Python ``int``, ``date``,
``bool`` and ``None``; a warehouse read gives numpy ``int64``, nullable ``Int64``, ``Timestamp``,
ISO text, 0/1 and ``NaN``. Each column is therefore reduced to a *canonical* value chosen by its
registry ``ColumnType`` before anything is compared (the rules are on ``_canonical``): whole numbers
for INT, calendar days for DATE, microseconds for DATETIME, 0/1 for BOOL/YESNO, exact decimal text
for MONEY, lowercase text for UUID, and TEXT exactly as it is (no trimming, no case folding: a
whitespace edit is an edit). None, NaN, NaT and pd.NA are all "missing", and equal to each other.

How it stays fast (a million rows in well under the time of one ``pd.merge`` on the text keys):

1. Keys are factorized once over both sides together, so the join is integer indexing into position
   tables, never a merge on 36-character strings. The join and the pair-by-pair text of step 2 run
   on a second thread (Arrow releases the GIL) while the other columns are worked on.
2. Each business column becomes integer ids per row, such that a new row and the old row with its
   key get the same id exactly when their canonical values are equal. Where values repeat (dates,
   minutes, staff, tasks) that is one factorization of both sides together, normalising only the
   distinct values; for mostly-distinct text (notes) the pairs are compared vectorised instead,
   which is cheaper than hashing every text.
3. A row's ids fold into a 64-bit row hash, ``h = (h ^ mix(id)) * P`` per column (one hash per
   thread; a pair is compared further when either differs). ``mix`` (the splitmix64 finaliser) and
   multiplying by an odd ``P`` are both bijections on 64-bit integers, so two rows that differ in
   ONE field always hash differently. Rows that differ in several fields hash alike with probability
   about 2**-64 (5e-20) per changed row: at 10,000 changed rows a night, one missed change in
   roughly 10**15 nights. Equal hashes are accepted as equal rows.
4. Only rows whose hashes differ are compared field by field, on freshly normalised values of just
   those rows, and only a field that really differs is reported; the hash alone never reports one.

Extra memory is a few hundred bytes per row at the peak (ids, hashes and position tables, one
column at a time; the key's distinct values), about 0.4 GB for 1M rows x 12 columns: see
``benchmarks/compare_bench.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Context, Decimal

import numpy as np
import pandas as pd

from xpm_pipeline.entities import ENTITIES, ColumnType, Entity
from xpm_pipeline.xpm.parse import parse_xpm_date

T = ColumnType
FIELD, OLD_VALUE, NEW_VALUE = "field", "old_value", "new_value"


@dataclass(frozen=True, eq=False)
class Comparison:
    """What changed between ``old`` (the warehouse) and ``new`` (XPM).

    ``added`` and ``changed`` hold the full rows of ``new`` (what to insert and update), ``deleted``
    the key columns of the rows of ``old`` that ``new`` no longer has. ``changes`` has one row per
    changed field: the key columns (as in ``new``), ``field``, and ``old_value``/``new_value`` as
    canonical text, None where the value is missing. All four keep the row order of their source
    frame; ``changes`` runs in ``new`` row order, then column order.
    """

    key: tuple[str, ...]
    added: pd.DataFrame
    deleted: pd.DataFrame
    changed: pd.DataFrame
    changes: pd.DataFrame
    unchanged: int

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "deleted": len(self.deleted),
            "changed": len(self.changed),
            "unchanged": self.unchanged,
            "fields_changed": len(self.changes),
        }

    def __bool__(self) -> bool:
        """True when anything differs."""
        return bool(len(self.added) or len(self.deleted) or len(self.changed))


def compare_entity(entity: Entity | str, old: pd.DataFrame, new: pd.DataFrame) -> Comparison:
    """``compare_frames`` with the key, the columns and their types taken from the registry."""
    if isinstance(entity, str):
        entity = ENTITIES[entity]
    return compare_frames(
        old,
        new,
        key=entity.key,
        columns=[c.name for c in entity.columns if not c.key],
        types={c.name: c.type for c in entity.columns},
    )


def compare_frames(
    old: pd.DataFrame,
    new: pd.DataFrame,
    *,
    key: str | Sequence[str],
    columns: Sequence[str],
    types: Mapping[str, ColumnType] | None = None,
) -> Comparison:
    """Compare ``columns`` of the rows of ``old`` and ``new`` that share a ``key``.

    ``types`` gives each column's ``ColumnType`` (keys included); a column it leaves out has its type
    inferred from the values (a convenience for ad-hoc use: pipeline code passes the registry's
    types, as ``compare_entity`` does). Raises ``ValueError`` for a missing or duplicated key and for
    a value its column type cannot read (``1.5`` minutes, ``"maybe"`` as a boolean).
    """
    key = (key,) if isinstance(key, str) else tuple(key)
    columns = tuple(columns)
    if not key:
        raise ValueError("a comparison needs at least one key column")
    if set(key) & set(columns):
        raise ValueError(f"key columns {sorted(set(key) & set(columns))} are also listed as compared columns")
    for side, frame in (("old", old), ("new", new)):
        absent = [name for name in key + columns if name not in frame.columns]
        if absent:
            raise KeyError(f"the {side} frame has no column(s) {absent}")
    types = {name: (types or {}).get(name) or _infer_type(old[name], new[name]) for name in key + columns}

    paired = [name for name in columns if _mostly_distinct_text(old[name], new[name], types[name])]
    hashes = _RowHashes(len(old), len(new))
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The join and the mostly-distinct text are Arrow work, which releases the GIL: they run on a
        # second core while the other columns are hashed here.
        keys = [(old[name], new[name], types[name], name) for name in key]
        joining = pool.submit(_join, keys, [(old[name], new[name], types[name]) for name in paired])
        for name in columns:
            if name not in paired:
                hashes.fold(*_value_ids(old[name], new[name], types[name], name))
        join = joining.result()
    added, deleted, old_rows, new_rows = join.added, join.deleted, join.old_rows, join.new_rows
    suspect = (hashes.old[old_rows] != hashes.new[new_rows]) | (join.hashes.old[old_rows] != join.hashes.new[new_rows])
    changed_rows, changes = _field_changes(old, new, old_rows[suspect], new_rows[suspect], key, columns, types)

    return Comparison(
        key=key,
        added=new.iloc[added].reset_index(drop=True),
        deleted=old.iloc[deleted][list(key)].reset_index(drop=True),
        changed=new.iloc[changed_rows].reset_index(drop=True),
        changes=changes,
        unchanged=len(new_rows) - len(changed_rows),
    )


# --- keys and row hashes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Join:
    """Rows of ``new`` whose key ``old`` lacks (``added``), rows of ``old`` whose key ``new`` lacks
    (``deleted``), the pairs (``old_rows[i]``, ``new_rows[i]``, in ``new`` order), and the row hashes
    of the mostly-distinct text columns, which are compared pair by pair."""

    added: np.ndarray
    deleted: np.ndarray
    old_rows: np.ndarray
    new_rows: np.ndarray
    hashes: _RowHashes


def _join(keys: list[tuple[pd.Series, pd.Series, ColumnType, str]], paired_text: list[tuple]) -> _Join:
    """Pair the rows by key; ``keys`` holds (old, new, type, name) of each key column, ``paired_text``
    (old, new, type) of each column for ``_pair_ids``."""
    key_old, key_new = _key_ids(keys)
    size = int(max(key_old.max(initial=-1), key_new.max(initial=-1))) + 1
    where_old = _positions(key_old, size, [old for old, *_ in keys], "old")
    where_new = _positions(key_new, size, [new for _, new, *_ in keys], "new")
    in_old = where_old[key_new]  # for each new row, its position in old, or -1
    new_rows = np.flatnonzero(in_old >= 0)
    old_rows = in_old[new_rows]
    hashes = _RowHashes(len(key_old), len(key_new))
    for old, new, type_ in paired_text:
        hashes.fold(*_pair_ids(old, new, type_, old_rows, new_rows))
    return _Join(np.flatnonzero(in_old < 0), np.flatnonzero(where_new[key_old] < 0), old_rows, new_rows, hashes)


def _key_ids(columns: list[tuple[pd.Series, pd.Series, ColumnType, str]]) -> tuple[np.ndarray, np.ndarray]:
    """One integer per row, equal on both sides exactly when the (canonical) keys are equal."""
    ids_old = ids_new = None
    for old, new, type_, name in columns:
        col_old, col_new = _value_ids(old, new, type_, name)
        for side, ids in (("old", col_old), ("new", col_new)):
            if (ids < 0).any():
                raise ValueError(f"the {side} frame has rows without a key {name!r}")
        if ids_old is None:
            ids_old, ids_new = col_old, col_new
        else:  # a composite key: pair the ids so far with this column's, and renumber
            width = int(max(col_old.max(initial=-1), col_new.max(initial=-1))) + 1
            joint, _ = pd.factorize(np.concatenate([ids_old * width + col_old, ids_new * width + col_new]))
            ids_old, ids_new = joint[: len(old)], joint[len(old) :]
    return ids_old, ids_new


def _positions(ids: np.ndarray, size: int, key: list[pd.Series], side: str) -> np.ndarray:
    """Row position of each key id (-1: absent); refuses duplicated keys rather than pick one row."""
    counts = np.bincount(ids, minlength=size)
    if len(ids) and counts.max() > 1:
        repeated = np.flatnonzero(counts[ids] > 1)[:3]
        shown = [tuple(column.iloc[i] for column in key) for i in repeated]
        raise ValueError(f"the {side} frame has duplicated keys, e.g. {shown}")
    where = np.full(size, -1, dtype=np.intp)
    where[ids] = np.arange(len(ids))
    return where


_SEED = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)  # odd, so multiplying by it is a bijection on uint64
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _fold(hashes: np.ndarray, ids: np.ndarray, scratch: np.ndarray) -> None:
    """``hashes = (hashes ^ mix(ids)) * P`` in place, where ``mix`` is splitmix64's finaliser (what
    ``pandas.util.hash_array`` applies to integers), a bijection. Overwrites ``ids`` (int64)."""
    h = ids.view(np.uint64)
    tmp = scratch[: len(h)]
    for shift, multiplier in ((30, _MIX1), (27, _MIX2)):
        np.right_shift(h, np.uint64(shift), out=tmp)
        h ^= tmp
        h *= multiplier
    np.right_shift(h, np.uint64(31), out=tmp)
    h ^= tmp
    hashes ^= h
    hashes *= _PRIME


class _RowHashes:
    """A 64-bit hash of each row of both sides, folded in one column at a time: after every column,
    a pair of rows (old, new with its key) has equal hashes if their values so far are equal."""

    def __init__(self, n_old: int, n_new: int) -> None:
        self.old = np.full(n_old, _SEED, dtype=np.uint64)
        self.new = np.full(n_new, _SEED, dtype=np.uint64)
        self._scratch = np.empty(max(n_old, n_new), dtype=np.uint64)

    def fold(self, ids_old: np.ndarray, ids_new: np.ndarray) -> None:
        """Fold in one column, given as ids that a pair shares exactly when its values are equal
        (int64 ids are overwritten: they are scratch by then)."""
        _fold(self.old, ids_old.astype(np.int64, copy=False), self._scratch)
        _fold(self.new, ids_new.astype(np.int64, copy=False), self._scratch)


def _value_ids(old: pd.Series, new: pd.Series, type_: ColumnType, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row integer ids of one column, equal across both sides exactly when the canonical values
    are equal; -1 for missing.

    Both sides are factorized together, then only the distinct values are normalised (a column of a
    million rows has a few hundred distinct dates or minutes), and ids are merged again where
    normalising made two distinct raw values one (``date`` and ``Timestamp``, ``ABC`` and ``abc``).
    """
    codes, uniques = _factorize(pd.concat([old, new], ignore_index=True))
    canonical, changed = _normalise(uniques, type_, name)
    if changed:
        merged, _ = _factorize(canonical)
        codes = np.append(merged, -1)[codes]
    return codes[: len(old)], codes[len(old) :]


def _mostly_distinct_text(old: pd.Series, new: pd.Series, type_: ColumnType, sample: int = 8192) -> bool:
    """Text in pandas' string dtype whose values are mostly distinct (judged on the first rows):
    cheaper to compare pair by pair than to factorize. Either way the answer is exact."""
    if type_ not in (T.TEXT, T.UUID) or not isinstance(old.dtype, pd.StringDtype) or old.dtype != new.dtype:
        return False
    head = old.iloc[:sample].dropna()
    return head.nunique() > len(head) // 2


def _pair_ids(
    old: pd.Series, new: pd.Series, type_: ColumnType, old_rows: np.ndarray, new_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ids for text in pandas' string dtype: each old row its own id, and a paired new row the id of
    its old row exactly when the texts are equal (a fresh id otherwise).

    That is all the row hash needs, and it is much cheaper than factorizing mostly-distinct text
    (notes, keys of other entities): the pairs are compared vectorised, with no hashing at all.
    """
    before, after = old.array.take(old_rows), new.array.take(new_rows)
    gap_before, gap_after = pd.isna(before), pd.isna(after)
    same = (gap_before & gap_after) | (~gap_before & ~gap_after & _equal(before, after))
    if type_ is T.UUID:  # UUIDs are equal whatever their case; lowercase only the pairs that differ
        differ = np.flatnonzero(~same & ~gap_before & ~gap_after)
        lower = [pd.Index(side.take(differ)).str.lower().array for side in (before, after)]
        same[differ] = _equal(*lower)
    ids_old = np.arange(len(old))
    ids_new = np.arange(len(old), len(old) + len(new))
    ids_new[new_rows[same]] = old_rows[same]
    return ids_old, ids_new


def _equal(left, right) -> np.ndarray:
    """Element-wise equality of two string arrays of one dtype (False where either is missing)."""
    equal = left == right
    return equal.to_numpy(dtype=bool, na_value=False) if hasattr(equal, "to_numpy") else np.asarray(equal, dtype=bool)


def _factorize(values) -> tuple[np.ndarray, pd.Index | np.ndarray]:
    """``pd.factorize``, except that texts differing only after a NUL character stay distinct.

    pandas hashes an all-text column of Python strings as C strings, which end at the first NUL, so
    it would take "a\\x00b" for "a" (Arrow-backed text, and columns with anything but text in them,
    are hashed correctly). Neither XPM (XML cannot carry a NUL) nor PostgreSQL text can hold one, but
    an exact comparison has to check: such a column is factorized by Python equality instead.
    """
    if values.dtype == object or getattr(values.dtype, "storage", None) == "python":
        objects = values if isinstance(values, np.ndarray) else values.to_numpy(dtype=object)
        if _has_nul(objects):
            return _factorize_by_equality(objects)
    return pd.factorize(values)


def _has_nul(objects: np.ndarray, chunk: int = 65536) -> bool:
    """Whether an all-text array holds a NUL; False for any other array (pandas hashes it right)."""
    try:
        return any("\x00" in "".join(objects[i : i + chunk]) for i in range(0, len(objects), chunk))
    except TypeError:  # not all text
        return False


def _factorize_by_equality(objects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    missing = pd.isna(objects).tolist()
    table: dict = {}
    codes = [-1 if gap else table.setdefault(value, len(table)) for value, gap in zip(objects.tolist(), missing)]
    uniques = np.empty(len(table), dtype=object)
    uniques[:] = list(table)
    return np.array(codes, dtype=np.intp), uniques


# --- field by field ------------------------------------------------------------------------------------


def _field_changes(
    old: pd.DataFrame,
    new: pd.DataFrame,
    old_rows: np.ndarray,
    new_rows: np.ndarray,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    types,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Compare the paired rows (those whose hashes differ) field by field.

    Returns the positions in ``new`` of the rows with at least one changed field, and the changes.
    """
    where: list[np.ndarray] = []  # index into the pairs, per column
    before_text: list[str | None] = []
    after_text: list[str | None] = []
    for name in columns if len(new_rows) else ():  # (no pairs: nothing to read)
        type_ = types[name]
        before, before_missing = _canonical_rows(old[name].take(old_rows), type_, name)
        after, after_missing = _canonical_rows(new[name].take(new_rows), type_, name)
        differs = np.flatnonzero(
            (before_missing != after_missing) | (~before_missing & ~after_missing & (before != after))
        )
        text = _TEXT_OF[type_]
        where.append(differs)
        before_text += [None if before_missing[i] else text(before[i]) for i in differs]
        after_text += [None if after_missing[i] else text(after[i]) for i in differs]
    pair = np.concatenate(where) if where else np.empty(0, dtype=np.intp)
    field = np.repeat(np.arange(len(columns)), [len(w) for w in where]) if where else pair
    order = np.lexsort((field, pair))  # new row order, then column order
    changes = new.iloc[new_rows[pair[order]]][list(key)].reset_index(drop=True)
    changes[FIELD] = pd.Series(np.asarray(columns, dtype=object)[field[order]], dtype=object)
    changes[OLD_VALUE] = pd.Series(np.asarray(before_text, dtype=object)[order], dtype=object)
    changes[NEW_VALUE] = pd.Series(np.asarray(after_text, dtype=object)[order], dtype=object)
    return new_rows[np.unique(pair)], changes


def _canonical_rows(values: pd.Series, type_: ColumnType, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Canonical value of each row (a filler where missing) and the missing mask."""
    codes, uniques = _factorize(values)
    canonical, _ = _normalise(uniques, type_, name)
    if not isinstance(canonical, np.ndarray):
        canonical = canonical.to_numpy(dtype=object)
    filler = 0 if canonical.dtype.kind == "i" else None
    return np.append(canonical, np.array([filler], dtype=canonical.dtype))[codes], codes < 0


# --- canonical values ----------------------------------------------------------------------------------

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_DECIMAL = Context(prec=1000)  # wide enough that normalising an amount never rounds it
_CENT = Decimal("0.01")
_FLAG_TEXT = {"true": 1, "false": 0, "yes": 1, "no": 0, "1": 1, "0": 0}
_BAD = (TypeError, ValueError, KeyError, OverflowError, ArithmeticError)


def _normalise(uniques: pd.Index | np.ndarray, type_: ColumnType, name: str) -> tuple[np.ndarray | pd.Index, bool]:
    """Canonical values of the distinct values ``pd.factorize`` found, and whether normalising
    changed any (and so may have made two of them one)."""
    if isinstance(uniques.dtype, pd.StringDtype) and type_ in (T.TEXT, T.UUID):
        # pandas' string dtype holds nothing but text: TEXT is canonical as it is, and UUIDs are
        # lowercased vectorised (keys are the biggest column: every value distinct).
        if type_ is T.TEXT:
            return uniques, False
        lowered = uniques.str.lower()
        return lowered, bool((lowered != uniques).any())
    values = _numpy(uniques, type_, name)
    canonical = _canonical(values, type_, name)
    return canonical, canonical is not values


def _canonical(values: np.ndarray, type_: ColumnType, name: str) -> np.ndarray:
    """Canonical values of distinct non-missing values: int64 for INT, DATE, DATETIME, BOOL, YESNO;
    text (object) for TEXT, UUID, MONEY. Returns ``values`` itself when it is already canonical.

    INT       whole numbers: ints of any kind, nullable Int64, integral floats (an INT column with
              NULLs read as float64), numeric text. 1.5 is refused, never rounded.
    DATE      days since 1970-01-01: date; datetime/Timestamp (its calendar date); datetime64;
              XPM text (2026-08-14T00:00:00, 2026-08-14, 20260814).
    DATETIME  microseconds since 1970-01-01 in practice-local time: naive datetime/Timestamp,
              datetime64, ISO text, a date (midnight). A value with a UTC offset is refused:
              practice-local time has none, and guessing a zone could hide or invent a change.
    BOOL      0/1 from bool, 0/1 numbers, true/false/yes/no/1/0 text in any case (YESNO alike).
    MONEY     exact decimal text with at least two places: 12.5, 12.50 and Decimal("12.500") are
              all "12.50"; a float counts as its shortest repr (0.1 is 0.1, not 0.1000000000000000055).
    UUID      lowercase text (str or uuid.UUID).
    TEXT      the text itself: no trimming, no case folding. Non-text values by str(), bytes as UTF-8.
    """
    try:
        return _CANONICAL[type_](values)
    except _BAD as exc:
        raise ValueError(f"column {name!r} ({type_.value}): {exc}") from None


def _numpy(uniques: pd.Index | np.ndarray, type_: ColumnType, name: str) -> np.ndarray:
    """The distinct values ``pd.factorize`` found (an Index without NA) as a numpy array."""
    dtype = uniques.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        if type_ is T.DATETIME:
            raise ValueError(f"column {name!r} (datetime): values with a UTC offset; practice-local time has none")
        return uniques.tz_localize(None).to_numpy()  # wall-clock time, whose calendar date a DATE keeps
    if isinstance(dtype, np.dtype):
        return np.asarray(uniques)
    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # nullable and Arrow numbers, booleans, dates
    if isinstance(numpy_dtype, np.dtype) and numpy_dtype.kind in "iufbM":
        return uniques.to_numpy(dtype=numpy_dtype)
    return uniques.to_numpy(dtype=object)


def _each(convert: Callable, values: np.ndarray, dtype) -> np.ndarray:
    """``convert`` applied to every value; a failure names the value that could not be read."""
    items = values.tolist()
    try:
        if dtype is object:
            return np.array(list(map(convert, items)), dtype=object)
        return np.fromiter(map(convert, items), dtype, len(items))
    except _BAD:
        for item in items:
            try:
                np.array([convert(item)], dtype=dtype)
            except _BAD as exc:
                raise ValueError(f"cannot read {item!r} ({exc})") from None
        raise


def _int(value) -> int:
    number = int(value)
    if not isinstance(value, str) and number != value:
        raise ValueError("not a whole number")
    return number


def _days(value) -> int:
    if isinstance(value, str):
        value = parse_xpm_date(value)
    elif isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise TypeError("not a date")
    return value.toordinal() - _EPOCH_DAY


def _micros(value) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    elif isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("has a UTC offset; practice-local time has none")
        return (value - _EPOCH) // _MICROSECOND
    if isinstance(value, date):
        return (value.toordinal() - _EPOCH_DAY) * 86_400_000_000
    raise TypeError("not a datetime")


def _flag(value) -> int:
    if isinstance(value, str):
        return _FLAG_TEXT[value.strip().lower()]
    if isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating, Decimal)) and value in (0, 1):
        return int(value)
    raise ValueError("not a boolean")


def _money(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a boolean is not an amount")
    if isinstance(value, (float, np.floating)):
        value = repr(float(value))
    elif isinstance(value, np.integer):
        value = int(value)
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("not a finite amount")
    number = _DECIMAL.normalize(number) if number else Decimal(0)  # 12.50 -> 12.5; -0.00 -> 0
    if number.as_tuple().exponent > -2:
        number = number.quantize(_CENT, context=_DECIMAL)
    return format(number, "f")


def _text(value) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _as_whole(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind in "iub":
        if kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{values.max()} is too large")
        return values.astype(np.int64, copy=False)
    if kind == "f":
        bad = ~(np.abs(values) < 2.0**63) | (values != np.trunc(values))
        if bad.any():
            raise ValueError(f"cannot read {values[bad][0]!r} (not a whole number)")
        return values.astype(np.int64)
    return _each(_int, values, np.int64)


def _as_days(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "M":
        return values.astype("datetime64[D]").astype(np.int64)
    return _each(_days, values, np.int64)


def _as_micros(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "M":
        return values.astype("datetime64[us]").astype(np.int64)
    return _each(_micros, values, np.int64)


def _as_flag(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(np.int64)
    if kind in "iuf":
        bad = (values != 0) & (values != 1)
        if bad.any():
            raise ValueError(f"cannot read {values[bad][0]!r} (not a boolean)")
        return values.astype(np.int64)
    return _each(_flag, values, np.int64)


def _as_text(values: np.ndarray) -> np.ndarray:
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values
    return _each(_text, values, object)


def _as_uuid(values: np.ndarray) -> np.ndarray:
    return _each(str.lower, _as_text(values), object)


def _as_money(values: np.ndarray) -> np.ndarray:
    return _each(_money, values, object)


_CANONICAL: dict[ColumnType, Callable[[np.ndarray], np.ndarray]] = {
    T.TEXT: _as_text,
    T.UUID: _as_uuid,
    T.INT: _as_whole,
    T.MONEY: _as_money,
    T.DATE: _as_days,
    T.DATETIME: _as_micros,
    T.BOOL: _as_flag,
    T.YESNO: _as_flag,
}


def _flag_text(flag) -> str:
    return "true" if flag else "false"


# Canonical value -> the text written to the audit table (old_value / new_value).
_TEXT_OF: dict[ColumnType, Callable[[object], str]] = {
    T.TEXT: str,
    T.UUID: str,
    T.MONEY: str,
    T.INT: str,
    T.DATE: lambda days: date.fromordinal(int(days) + _EPOCH_DAY).isoformat(),
    T.DATETIME: lambda micros: (_EPOCH + int(micros) * _MICROSECOND).isoformat(),
    T.BOOL: _flag_text,
    T.YESNO: _flag_text,
}


# --- types when none are given -------------------------------------------------------------------------

_INFERRED = {
    "string": T.TEXT,
    "integer": T.INT,
    "boolean": T.BOOL,
    "date": T.DATE,
    "datetime": T.DATETIME,
    "datetime64": T.DATETIME,
    "decimal": T.MONEY,
    "floating": T.MONEY,
    "mixed-integer-float": T.MONEY,
}


def _infer_type(old: pd.Series, new: pd.Series) -> ColumnType:
    """A column type from the values of both sides, for columns the caller gave no type.

    Text on one side defers to the other side's type (it is read as that type); ints with floats
    compare as exact decimals; dates with datetimes as datetimes (a date is its midnight).
    """
    found = {pd.api.types.infer_dtype(side, skipna=True) for side in (old, new)} - {"empty"}
    kinds = {_INFERRED.get(kind, T.TEXT) for kind in found}
    if len(kinds) > 1:
        kinds.discard(T.TEXT)
    if kinds == {T.INT, T.MONEY}:
        return T.MONEY
    if kinds == {T.DATE, T.DATETIME}:
        return T.DATETIME
    if kinds == {T.INT, T.BOOL}:
        return T.BOOL
    return kinds.pop() if len(kinds) == 1 else T.TEXT
