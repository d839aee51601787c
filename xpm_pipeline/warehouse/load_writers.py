"""The dialect-specific half of a load: how rows reach the database, and how the diff is executed.

``load`` decides *what* happens (lock, fresh insert or staged diff, scoped soft delete) and asks a writer
to do each step. Both writers run the same Core statements from ``merge_sql``; they differ only where
the databases do:

=====================  =========================================  ==========================================
step                   PostgreSQL                                 SQLite
=====================  =========================================  ==========================================
serialise tenant       advisory xact lock (table, tenant)         ``BEGIN IMMEDIATE`` already holds the DB
tenant has no rows     binary COPY straight into the table        executemany straight into the table
                       (indexes deferred when the table is empty)
stage rows             binary COPY into a TEMP table, ANALYZE     executemany into a keyed TEMP table
write the diff         one statement: diff CTE -> upsert CTE,     count the diff, then upsert it
                       counts from the same snapshot
afterwards             ANALYZE the table if it grew a lot         -
=====================  =========================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter

from sqlalchemy import Connection, Insert, Table, exists, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from xpm_pipeline.entities import Entity
from xpm_pipeline.warehouse import merge_sql, pg_bulk, sqlite_bulk
from xpm_pipeline.warehouse.db import dialect_name
from xpm_pipeline.warehouse.load_batch import Batch
from xpm_pipeline.warehouse.schema import SYNCED_AT

DEFER_INDEXES_MIN_ROWS = 50_000
"""A first load into an empty PostgreSQL table at least this big rebuilds the indexes afterwards."""

ANALYZE_MIN_ROWS = 10_000
"""After inserting at least this many rows, and more than ``ANALYZE_GROWTH`` of the table, ANALYZE it."""
ANALYZE_GROWTH = 0.1


class Writer:
    """One load's access to the database: ``conn`` is inside the load's transaction."""

    insert: Callable[[Table], Insert]
    """The dialect's ``insert`` (the one with ``on_conflict_do_update``)."""

    def __init__(self, conn: Connection, entity: Entity, target: Table, tenant_id: str) -> None:
        self.conn, self.entity, self.target, self.tenant_id = conn, entity, target, tenant_id

    def accept(self, batch: Batch) -> Batch:
        """The batch as this database should receive it (checked, rounded)."""
        return batch

    def begin(self) -> None:
        """Serialise with other loads of this tenant's rows of this table."""

    def tenant_has_rows(self) -> bool:
        target = self.target
        return bool(self.conn.execute(select(exists().where(target.c.tenant_id == self.tenant_id))).scalar())

    def insert_fresh(self, batch: Batch, synced_at: datetime) -> None:
        """Insert every row of ``batch``: the tenant has none yet, so there is nothing to compare."""
        raise NotImplementedError

    def stage(self, names: Sequence[str], columns: Sequence[list], key: Sequence[str]) -> Table:
        """A temporary table holding ``columns`` (values for ``names``), typed like the entity table."""
        raise NotImplementedError

    def drop(self, stage: Table) -> None:
        raise NotImplementedError

    def write_diff(self, stage: Table, synced_at: datetime) -> tuple[int, int, int]:
        """Write staged rows that are new, revived or changed; return (new, revived, written)."""
        raise NotImplementedError

    def rowcount(self, statement) -> int:
        """Rows an INSERT/UPDATE wrote (SQLAlchemy keeps an INSERT's count only when asked to)."""
        return self.conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount

    def finish(self, inserted: int) -> None:
        """Anything due after the writes (still inside the transaction)."""

    def _fresh_columns(self, batch: Batch, synced_at: datetime) -> tuple[list[str], list]:
        n = len(batch)
        names = ["tenant_id", *self.entity.column_names, SYNCED_AT]
        business = (batch.columns[c] for c in self.entity.column_names)
        columns = [repeat(self.tenant_id, n), *business, repeat(synced_at, n)]
        return names, columns


class SqliteWriter(Writer):
    insert = staticmethod(sqlite_insert)

    def accept(self, batch: Batch) -> Batch:
        return sqlite_bulk.check_like_postgres(batch, self.target)

    def insert_fresh(self, batch: Batch, synced_at: datetime) -> None:
        names, columns = self._fresh_columns(batch, synced_at)
        sqlite_bulk.insert_rows(self.conn, self.target, names, columns)

    def stage(self, names: Sequence[str], columns: Sequence[list], key: Sequence[str]) -> Table:
        stage = sqlite_bulk.create_stage(self.conn, self.target, names, key)
        sqlite_bulk.insert_rows(self.conn, stage, names, columns)
        return stage

    def drop(self, stage: Table) -> None:
        sqlite_bulk.drop(self.conn, stage)

    def write_diff(self, stage: Table, synced_at: datetime) -> tuple[int, int, int]:
        changed = merge_sql.diff(self.target, stage, self.entity, self.tenant_id).subquery("changed")
        new, revived, written = self.conn.execute(merge_sql.diff_counts(changed)).one()
        if written:
            self.conn.execute(
                merge_sql.upsert(self.insert, self.target, changed, self.entity, self.tenant_id, synced_at)
            )
        return new, revived, written


class PostgresWriter(Writer):
    insert = staticmethod(pg_insert)

    def begin(self) -> None:
        pg_bulk.lock_tenant(self.conn, self.target.name, self.tenant_id)
        self._rows_before = pg_bulk.estimated_rows(self.conn, self.target.name)
        self._oids = pg_bulk.column_oids(self.conn, self.target.name)

    def insert_fresh(self, batch: Batch, synced_at: datetime) -> None:
        if len(batch) >= DEFER_INDEXES_MIN_ROWS:
            with pg_bulk.deferred_indexes(self.conn, self.target) as deferred:
                if deferred:
                    self._copy_into_target(batch, synced_at)
            if deferred:
                return
        self._copy_into_target(batch, synced_at, in_key_order=True)

    def _copy_into_target(self, batch: Batch, synced_at: datetime, in_key_order: bool = False) -> None:
        """COPY the batch into the entity table; ``in_key_order`` when its indexes are maintained row by row.

        Appending primary-key entries in key order keeps the B-tree's hot pages few (about twice as fast for
        1M rows, for a 0.5 s sort here).
        """
        pg_bulk.check_integer_ranges(batch.columns, self._oids)
        names, columns = self._fresh_columns(batch, synced_at)
        rows = zip(*columns)
        if in_key_order:
            rows = sorted(rows, key=itemgetter(*(names.index(name) for name in self.entity.key)))
        pg_bulk.copy_rows(self.conn, self.target.name, names, [self._oids[n] for n in names], rows)

    def stage(self, names: Sequence[str], columns: Sequence[list], key: Sequence[str]) -> Table:
        pg_bulk.check_integer_ranges(dict(zip(names, columns)), self._oids)
        stage = pg_bulk.create_stage(self.conn, self.target, names)
        pg_bulk.copy_rows(self.conn, stage.name, names, [self._oids[n] for n in names], zip(*columns))
        pg_bulk.analyze(self.conn, stage.name, key)
        return stage

    def drop(self, stage: Table) -> None:
        pg_bulk.drop(self.conn, stage)

    def write_diff(self, stage: Table, synced_at: datetime) -> tuple[int, int, int]:
        """One statement, one snapshot: the diff feeds both the upsert and the counts."""
        pg_bulk.set_local(self.conn, work_mem=pg_bulk.WORK_MEM)
        changed = merge_sql.diff(self.target, stage, self.entity, self.tenant_id).cte("changed")
        written = (
            merge_sql.upsert(self.insert, self.target, changed, self.entity, self.tenant_id, synced_at)
            .returning(literal_column("1"))
            .cte("written")
        )
        counts = merge_sql.diff_counts(changed).add_columns(
            select(func.count()).select_from(written).scalar_subquery()
        )
        new, revived, total, written_count = self.conn.execute(counts).one()
        if written_count != total:  # cannot happen under the tenant lock; never report a wrong count
            raise RuntimeError(f"{self.target.name}: wrote {written_count} rows of a {total}-row diff")
        return new, revived, total

    def finish(self, inserted: int) -> None:
        if inserted >= ANALYZE_MIN_ROWS and inserted >= ANALYZE_GROWTH * max(self._rows_before, 0):
            pg_bulk.analyze(self.conn, self.target.name)


def writer_for(conn: Connection, entity: Entity, target: Table, tenant_id: str) -> Writer:
    name = dialect_name(conn)
    if name == "postgresql":
        return PostgresWriter(conn, entity, target, tenant_id)
    if name == "sqlite":
        return SqliteWriter(conn, entity, target, tenant_id)
    raise NotImplementedError(f"bulk loads support PostgreSQL and SQLite, not {name}")
