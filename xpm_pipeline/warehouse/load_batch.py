"""The input of a bulk load: one entity's columns as plain Python lists, keys checked, duplicates gone.

Loads accept what the pipeline holds - a parse ``Rows``, a pandas DataFrame (the nightly comparison works
in pandas) or a plain ``{column: list}`` - and both dialect paths (binary COPY on PostgreSQL, executemany
on SQLite) want the same thing: one list per registry column holding ``str``/``int``/``Decimal``/``date``/
``bool``/``None``. ``Rows`` already hold exactly that (the parser types them), so they are used as they
are; frames and mappings are coerced column by column, with a C-speed type census first so a column that
is already right costs nothing.

Duplicate keys are resolved here (the last occurrence wins, as if the rows were applied in order) because
every set-based write downstream needs unique keys: PostgreSQL's ``ON CONFLICT`` refuses to touch a row twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from xpm_pipeline.entities import Column, ColumnType, Entity
from xpm_pipeline.xpm.parse import CONVERTERS, Rows

NONE = type(None)

# The Python types a column may already hold; anything else is converted value by value.
_ACCEPTED: dict[ColumnType, frozenset[type]] = {
    ColumnType.TEXT: frozenset({str, NONE}),
    ColumnType.UUID: frozenset({str, NONE}),
    ColumnType.INT: frozenset({int, NONE}),
    ColumnType.MONEY: frozenset({Decimal, NONE}),
    ColumnType.DATE: frozenset({date, NONE}),
    ColumnType.DATETIME: frozenset({datetime, NONE}),
    ColumnType.BOOL: frozenset({bool, NONE}),
    ColumnType.YESNO: frozenset({bool, NONE}),
}


@dataclass(frozen=True)
class Batch:
    """Rows of one entity as columns: ``columns[name]`` for every registry column, all the same length."""

    entity: Entity
    columns: dict[str, list]

    def __len__(self) -> int:
        return len(self.columns[self.entity.columns[0].name])


def prepare(entity: Entity, rows: Any) -> Batch:
    """A ``Batch`` from ``Rows``, a DataFrame or a ``{column: list}`` mapping (extra columns are ignored)."""
    if isinstance(rows, Rows):
        if rows.entity.name != entity.name:
            raise ValueError(f"rows are {rows.entity.name!r} rows, not {entity.name!r}")
        columns = {name: rows.data[name] for name in entity.column_names}
    elif _is_frame(rows):
        columns = {column.name: coerce(column, _frame_values(rows, column.name)) for column in entity.columns}
    elif isinstance(rows, Mapping):
        missing = [name for name in entity.column_names if name not in rows]
        if missing:
            raise ValueError(f"{entity.name} rows lack column(s) {missing}")
        columns = {column.name: coerce(column, list(rows[column.name])) for column in entity.columns}
    else:
        raise TypeError(f"expected parse Rows, a DataFrame or a column mapping, not {type(rows).__name__}")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{entity.name} columns have different lengths: {sorted(lengths)}")
    batch = Batch(entity, columns)
    _check_keys(batch)
    return _last_occurrence_wins(batch)


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns") and hasattr(value, "dtypes")


def _frame_values(frame, name: str) -> list:
    if name not in frame.columns:
        raise ValueError(f"the DataFrame lacks column {name!r}")
    series = frame[name]
    values = series.astype(object).tolist()
    missing = series.isna().tolist()
    if any(missing):
        values = [None if gone else value for value, gone in zip(values, missing)]
    return values


def coerce(column: Column, values: list) -> list:
    """``values`` as the Python type of ``column`` (strings are parsed the way XPM's text is)."""
    if set(map(type, values)) <= _ACCEPTED[column.type]:
        return values
    convert = _CONVERT[column.type]
    out = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(None)
        else:
            try:
                out.append(convert(column, value))
            except (TypeError, ValueError, ArithmeticError) as error:
                raise ValueError(f"{column.name}: {value!r} is not a valid {column.type.value} ({error})") from None
    return out


def _to_text(column: Column, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("bytes are not text")
    return str(value)


def _to_int(column: Column, value: Any) -> int:
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, (float, Decimal)) and value != int(value):  # numpy floats are floats
        raise ValueError("not a whole number")
    return int(value)


def _to_money(column: Column, value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        return CONVERTERS[ColumnType.MONEY](value)
    result = Decimal(repr(float(value))) if isinstance(value, float) or hasattr(value, "dtype") else Decimal(value)
    if not result.is_finite():
        raise ValueError("not finite")
    return result


def _to_date(column: Column, value: Any) -> date:
    if isinstance(value, str):
        return CONVERTERS[ColumnType.DATE](value)
    if isinstance(value, datetime):  # includes pandas Timestamp
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"{type(value).__name__} is not a date")


def _to_datetime(column: Column, value: Any) -> datetime:
    if isinstance(value, str):
        return CONVERTERS[ColumnType.DATETIME](value)
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    raise TypeError(f"{type(value).__name__} is not a datetime")


def _to_bool(column: Column, value: Any) -> bool:
    if isinstance(value, str):
        return CONVERTERS[column.type](value)
    if value in (0, 1):  # numpy.bool_, 0/1 integers
        return bool(value)
    raise ValueError("not a boolean")


_CONVERT = {
    ColumnType.TEXT: _to_text,
    ColumnType.UUID: _to_text,
    ColumnType.INT: _to_int,
    ColumnType.MONEY: _to_money,
    ColumnType.DATE: _to_date,
    ColumnType.DATETIME: _to_datetime,
    ColumnType.BOOL: _to_bool,
    ColumnType.YESNO: _to_bool,
}


def _check_keys(batch: Batch) -> None:
    for name in batch.entity.key:
        if None in batch.columns[name]:
            raise ValueError(f"{batch.entity.name}: key column {name!r} has an empty value")


def _last_occurrence_wins(batch: Batch) -> Batch:
    keys = [batch.columns[name] for name in batch.entity.key]
    key_values = keys[0] if len(keys) == 1 else list(zip(*keys))
    if len(set(key_values)) == len(key_values):
        return batch
    last = {key: index for index, key in enumerate(key_values)}
    keep = sorted(last.values())
    return Batch(batch.entity, {name: [values[i] for i in keep] for name, values in batch.columns.items()})
