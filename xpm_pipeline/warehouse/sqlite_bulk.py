"""SQLite bulk primitives: typed executemany into staging or entity tables, and PostgreSQL-parity checks.

Values are converted with the SQLAlchemy column types' own bind processors (dates as ISO text, money as
REAL, booleans as 0/1 ...), column by column, and handed to ``sqlite3``'s ``executemany`` in chunks: the
same stored form as an ORM/Core insert, at C speed, inside the caller's one transaction.

SQLite stores what PostgreSQL refuses (a 40-character "UUID", a minute count beyond int4, a NUL byte) and
keeps fractional cents a ``NUMERIC(14, 2)`` would round. ``check_like_postgres`` refuses and rounds the same
way first, so one load gives the same table on both dialects.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Column, Connection, Integer, MetaData, Numeric, String, Table, Text

from xpm_pipeline.warehouse.load_batch import Batch

CHUNK_ROWS = 50_000
INT4 = (-(1 << 31), (1 << 31) - 1)

_stage_counter = itertools.count(1)


def check_like_postgres(batch: Batch, target: Table) -> Batch:
    """Refuse values PostgreSQL would refuse; round money as ``NUMERIC(p, s)`` would."""
    columns = dict(batch.columns)
    for name, values in batch.columns.items():
        column_type = target.c[name].type
        present = [value for value in values if value is not None]
        if not present:
            continue
        if isinstance(column_type, Integer):
            low, high = min(present), max(present)
            if low < INT4[0] or high > INT4[1]:
                raise ValueError(f"{name}: {low if low < INT4[0] else high} is out of range for a 32-bit integer")
        elif isinstance(column_type, Numeric) and column_type.scale is not None:
            step = Decimal(1).scaleb(-column_type.scale)
            columns[name] = [None if v is None else Decimal(v).quantize(step, ROUND_HALF_UP) for v in values]
            limit = Decimal(10) ** (column_type.precision - column_type.scale)
            if any(abs(v) >= limit for v in columns[name] if v is not None):
                raise ValueError(f"{name}: a value does not fit NUMERIC({column_type.precision}, {column_type.scale})")
        elif isinstance(column_type, (String, Text)):
            if "\x00" in "".join(present):
                raise ValueError(f"{name}: text contains a NUL character")
            length = getattr(column_type, "length", None)
            if length is not None and max(map(len, present)) > length:
                raise ValueError(f"{name}: a value is longer than {length} characters")
    return Batch(batch.entity, columns)


def create_stage(conn: Connection, target: Table, names: Sequence[str], key: Sequence[str]) -> Table:
    """A TEMP table with ``target``'s types for ``names``, keyed like the target so lookups are indexed."""
    table = Table(
        f"_xpm_stage_{next(_stage_counter)}",
        MetaData(),
        *(Column(n, target.c[n].type, primary_key=n in key) for n in names),
        prefixes=["TEMPORARY"],
    )
    table.create(conn)
    return table


def drop(conn: Connection, table: Table) -> None:
    table.drop(conn)


def insert_rows(conn: Connection, table: Table, names: Sequence[str], columns: Sequence[Iterable]) -> None:
    """executemany of the given columns (lists, or ``itertools.repeat`` for constants) into ``table``.

    Values go through each column's bind processor, lazily, one chunk at a time.
    """
    dialect = conn.dialect
    processed = []
    for name, values in zip(names, columns):
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        processed.append(values if processor is None else map(processor, values))
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    cursor = conn.connection.driver_connection.cursor()
    try:
        rows: Iterable[tuple] = zip(*processed)
        while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
            cursor.executemany(sql, chunk)
    finally:
        cursor.close()
