"""Engines and write transactions: the same guarantees on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from xpm_pipeline.warehouse.db import UtcDateTime, dialect_name, make_engine, normalise_url, write_transaction


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def test_sqlite_engine_creates_folder_wal_and_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert (tmp_path / "deep" / "er" / "w.db").exists()
    assert dialect_name(engine) == "sqlite"


def test_postgres_url_uses_psycopg(postgres_url):
    engine = make_engine(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    assert engine.url.drivername == "postgresql+psycopg"
    assert dialect_name(engine) == "postgresql"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_sqlite_reads_happen_inside_the_transaction(sqlite_url):
    """The pysqlite recipe: a SELECT-only transaction is a real one (its snapshot is repeatable)."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.connect() as reader, reader.begin():
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        with engine.begin() as writer:
            writer.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1  # snapshot kept
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2


def test_sqlite_write_transaction_takes_the_write_lock_up_front(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    other = make_engine(sqlite_url, connect_args={"timeout": 0.05})
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("SELECT count(*) FROM t").scalar()  # only a read so far
        with pytest.raises(Exception, match="locked"):
            with write_transaction(other):
                pass


def test_write_transaction_rolls_back_on_error(warehouse_url):
    engine = make_engine(warehouse_url)
    md = MetaData()
    t = Table("t", md, Column("v", Integer))
    md.create_all(engine)
    with pytest.raises(RuntimeError):
        with write_transaction(engine) as conn:
            conn.execute(insert(t).values(v=1))
            raise RuntimeError("boom")
    with write_transaction(engine) as conn:
        conn.execute(insert(t).values(v=2))
    with engine.connect() as conn:
        assert conn.execute(select(t.c.v)).scalars().all() == [2]


def test_write_transactions_serialize_increments(warehouse_url):
    """Read-modify-write under write_transaction (+ FOR UPDATE) loses no update across threads."""
    engine = make_engine(warehouse_url)
    md = MetaData()
    t = Table("counter", md, Column("id", Integer, primary_key=True), Column("n", Integer))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(t).values(id=1, n=0))

    def bump():
        for _ in range(10):
            with write_transaction(engine) as conn:
                n = conn.execute(select(t.c.n).where(t.c.id == 1).with_for_update()).scalar()
                conn.execute(t.update().where(t.c.id == 1).values(n=n + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with engine.connect() as conn:
        assert conn.execute(select(t.c.n)).scalar() == 40


def test_utc_datetime_round_trips_as_aware_utc(warehouse_url):
    engine = make_engine(warehouse_url)
    md = MetaData()
    t = Table("times", md, Column("id", Integer, primary_key=True), Column("at", UtcDateTime))
    md.create_all(engine)
    plus_ten = timezone(timedelta(hours=10))
    when = datetime(2026, 11, 23, 19, 0, tzinfo=plus_ten)
    with engine.begin() as conn:
        conn.execute(insert(t).values(id=1, at=when))
        with pytest.raises(Exception, match="timezone-aware"):
            conn.execute(insert(t).values(id=2, at=datetime(2026, 1, 1)))
    with engine.connect() as conn:
        got = conn.execute(select(t.c.at)).scalar()
    assert got == when and got.tzinfo == timezone.utc
