"""PostgreSQL bulk primitives: binary COPY, temporary staging, statistics, deferred index builds.

Why each exists (measured with 1M time entries; see ``benchmarks/load_bench.py``):

- **Binary COPY** with the table's own column types (``copy.set_types``): psycopg's C dumpers write
  the wire format directly, 1.2-2x faster than text ``write_row``, and there is no text escaping to get
  wrong (tabs, newlines, backslashes and ``\\N`` in notes are just bytes). Its integer dumpers do not
  range-check, so ``check_integer_ranges`` does.
- **TEMP staging tables** are not WAL-logged and vanish at commit, so staging a reload costs no WAL.
- **ANALYZE** after staging: without statistics the planner guesses a fresh table is tiny and may pick
  a nested loop for the anti-join - quadratic on a large load. The entity table is analyzed too after a
  load that grew it a lot (autovacuum may be off or behind, and the next load joins against it).
- **Deferred indexes**: maintaining a primary key and three secondary B-trees row by row costs 7-10x
  the COPY itself (1M rows: 4M WAL records, 490 MB); building them once afterwards takes about half the
  time and 82 MB of WAL. Only done when the table is empty and its lock can be had at once - never
  against other tenants' rows or waiting readers.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Column, Connection, MetaData, Table, text
from sqlalchemy.exc import DBAPIError

# Per-transaction settings for the statements a load runs (SET LOCAL: gone at commit).
WORK_MEM = "256MB"  # the hash join of 1M staged rows against the entity table stays in memory
MAINTENANCE_WORK_MEM = "256MB"  # index builds sort in memory
LOCK_WAIT = "2s"  # how long a deferred-index load waits for the table lock before loading normally

_stage_counter = itertools.count(1)


def quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _int4(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def lock_tenant(conn: Connection, table: str, tenant_id: str) -> None:
    """Serialise loads of one tenant's rows of one table (other tenants and tables proceed).

    Held until commit. It makes "does this tenant have rows yet?" a stable answer for the load, and
    keeps two loads' diffs from racing each other.
    """
    conn.execute(
        text("SELECT pg_advisory_xact_lock(:table_key, :tenant_key)"),
        {"table_key": _int4(zlib.crc32(table.encode())), "tenant_key": _int4(zlib.crc32(tenant_id.encode()))},
    )


def set_local(conn: Connection, **settings: str) -> None:
    for name, value in settings.items():
        conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def column_oids(conn: Connection, table: str) -> dict[str, int]:
    """Each column's type OID as the database has it (binary COPY must match it exactly: int4 vs int8)."""
    rows = conn.execute(
        text(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"table": quote(conn, table)},
    )
    return {name: oid for name, oid in rows}


_INTEGER_BITS = {21: 16, 23: 32, 20: 64}  # int2, int4, int8 type OIDs


def check_integer_ranges(columns: dict[str, list], oids: dict[str, int]) -> None:
    """Refuse integers the column type cannot hold.

    psycopg's binary dumpers (3.3) truncate silently: 2**40 + 5 sent as int4 arrives as 5. The server
    never sees the overflow, so it is checked here (a C-speed ``min``/``max`` per integer column).
    """
    for name, values in columns.items():
        bits = _INTEGER_BITS.get(oids.get(name))
        if bits is None:
            continue
        present = [value for value in values if value is not None]
        if present:
            low, high = min(present), max(present)
            if low < -(1 << (bits - 1)) or high >= 1 << (bits - 1):
                raise ValueError(f"{name}: {low if low < 0 else high} is out of range for a {bits}-bit integer")


def copy_rows(conn: Connection, table: str, names: Sequence[str], oids: Sequence[int], rows: Iterable[tuple]) -> None:
    """Binary COPY of ``rows`` (tuples in ``names`` order) into ``table``, inside the current transaction."""
    columns = ", ".join(quote(conn, name) for name in names)
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(f"COPY {quote(conn, table)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(oids))
            write_row = copy.write_row
            for row in rows:
                write_row(row)
    finally:
        cursor.close()


def create_stage(conn: Connection, target: Table, names: Sequence[str]) -> Table:
    """An empty TEMP table with ``target``'s types for ``names`` (no WAL, no constraints, dropped at commit)."""
    name = f"_xpm_stage_{next(_stage_counter)}"
    conn.execute(
        text(
            f"CREATE TEMP TABLE {quote(conn, name)} ON COMMIT DROP AS "
            f"SELECT {', '.join(quote(conn, n) for n in names)} FROM {quote(conn, target.name)} WITH NO DATA"
        )
    )
    return Table(name, MetaData(), *(Column(n, target.c[n].type) for n in names))


def drop(conn: Connection, table: Table) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {quote(conn, table.name)}"))


def analyze(conn: Connection, table: str, columns: Sequence[str] = ()) -> None:
    """Statistics for the planner; a staging table only needs its row count and key columns'."""
    listed = f" ({', '.join(quote(conn, c) for c in columns)})" if columns else ""
    conn.execute(text(f"ANALYZE {quote(conn, table)}{listed}"))


def estimated_rows(conn: Connection, table: str) -> float:
    """The planner's row estimate (``pg_class.reltuples``; -1 when never analyzed)."""
    value = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"), {"table": quote(conn, table)}
    ).scalar()
    return float(value if value is not None else -1)


def has_rows(conn: Connection, target: Table, tenant_id: str | None = None) -> bool:
    """Whether the table (or one tenant's part of it, via the primary key) holds any row at all."""
    where = "" if tenant_id is None else " WHERE tenant_id = :tenant"
    found = conn.execute(
        text(f"SELECT EXISTS (SELECT 1 FROM {quote(conn, target.name)}{where})"), {"tenant": tenant_id}
    ).scalar()
    return bool(found)


@contextmanager
def deferred_indexes(conn: Connection, target: Table) -> Iterator[bool]:
    """Drop the empty ``target``'s indexes for the body, rebuild them exactly afterwards; yields success.

    Yields False (and changes nothing) when the table is not empty or its ACCESS EXCLUSIVE lock is not
    free within ``LOCK_WAIT``. The definitions are read from the catalog (``pg_get_indexdef``,
    ``pg_get_constraintdef``), so indexes added by later migrations or by hand come back as they were.
    Indexes that something relies on (a foreign key; a view grouping by the primary key) are kept. All
    of it is transactional: if the load fails, the rollback restores the original indexes.
    """
    savepoint = conn.begin_nested()
    try:
        previous = conn.execute(text("SELECT current_setting('lock_timeout')")).scalar()
        set_local(conn, lock_timeout=LOCK_WAIT)
        conn.execute(text(f"LOCK TABLE {quote(conn, target.name)} IN ACCESS EXCLUSIVE MODE"))
        set_local(conn, lock_timeout=previous)
        empty = not has_rows(conn, target)
    except DBAPIError:
        savepoint.rollback()
        yield False
        return
    if not empty:
        savepoint.rollback()  # releases the lock taken inside the savepoint
        yield False
        return
    savepoint.commit()
    rebuild = _drop_indexes(conn, target.name)
    yield True
    set_local(conn, maintenance_work_mem=MAINTENANCE_WORK_MEM)
    for statement in rebuild:
        conn.execute(text(statement))


def _drop_indexes(conn: Connection, table: str) -> list[str]:
    """Drop every index of ``table`` that can be rebuilt; return the statements that rebuild them."""
    rows = conn.execute(
        text(
            """
            SELECT i.indexrelid::regclass::text AS index_name,
                   pg_get_indexdef(i.indexrelid) AS index_def,
                   c.conname, pg_get_constraintdef(c.oid) AS constraint_def,
                   obj_description(i.indexrelid, 'pg_class') AS index_comment,
                   CASE WHEN c.oid IS NULL THEN NULL ELSE obj_description(c.oid, 'pg_constraint') END
                       AS constraint_comment,
                   EXISTS (SELECT 1 FROM pg_depend d WHERE d.deptype = 'n' AND (
                               (d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
                            OR (d.refclassid = 'pg_constraint'::regclass AND d.refobjid = c.oid))) AS referenced
            FROM pg_index i
            LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                                      AND c.contype IN ('p', 'u')
            WHERE i.indrelid = CAST(:table AS regclass)
            ORDER BY c.oid IS NULL, i.indexrelid
            """
        ),
        {"table": quote(conn, table)},
    ).all()
    rebuild: list[str] = []
    table_sql = quote(conn, table)
    for row in rows:
        if row.referenced:
            continue  # a foreign key or a view relies on it: keep it and pay the row-by-row cost
        if row.conname is not None:
            conn.execute(text(f"ALTER TABLE {table_sql} DROP CONSTRAINT {quote(conn, row.conname)}"))
            rebuild.append(f"ALTER TABLE {table_sql} ADD CONSTRAINT {quote(conn, row.conname)} {row.constraint_def}")
            if row.constraint_comment is not None:
                rebuild.append(
                    f"COMMENT ON CONSTRAINT {quote(conn, row.conname)} ON {table_sql} IS "
                    f"{_literal(row.constraint_comment)}"
                )
        else:
            conn.execute(text(f"DROP INDEX {row.index_name}"))
            rebuild.append(row.index_def)
        if row.index_comment is not None:
            rebuild.append(f"COMMENT ON INDEX {row.index_name} IS {_literal(row.index_comment)}")
    return rebuild


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
