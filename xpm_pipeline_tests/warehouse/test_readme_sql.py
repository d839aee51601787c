"""Every SQL example in README.md runs as written on the dialect(s) it names, against a warehouse filled the
way a user fills it: `connect` (initial sync), an edit in XPM found by `sync --mode nightly`, and `export add`."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline_tests.cli_support import cli_env, run
from xpm_pipeline_tests.export.support import job_updates
from xpm_pipeline_tests.support import admin

README = Path(__file__).resolve().parents[2] / "README.md"
DIALECTS = {"PostgreSQL": "postgresql", "SQLite": "sqlite"}
_BLOCK = re.compile(r"^```sql([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_sql_blocks() -> list[tuple[set[str], str]]:
    """(dialects, SQL) of each fenced ```sql block; the info string names them: ```sql -- PostgreSQL, SQLite."""
    blocks = []
    for label, body in _BLOCK.findall(README.read_text(encoding="utf-8")):
        named = {dialect for word, dialect in DIALECTS.items() if re.search(rf"\b{word}\b", label)}
        assert label.strip().startswith("--") and named, f"README SQL block without its dialect: ```sql{label}"
        blocks.append((named, body))
    return blocks


def statements(sql: str) -> list[str]:
    return [part.strip() for part in re.split(r";\s*$", sql, flags=re.MULTILINE) if part.strip()]


@pytest.fixture
def sandbox():
    with SandboxServer(SandboxConfig(size="small", seed=5, tenants=1), port=0) as server:
        yield server


@pytest.fixture
def synced(sandbox, tmp_path, warehouse_url):
    """The warehouse after connect + initial sync, one timesheet edited in XPM and found by a nightly sync,
    and a change queued for XPM."""
    tenant = sandbox.tenant_ids[0]
    env = cli_env(sandbox, tmp_path, XPM_WAREHOUSE_URL=warehouse_url)
    connected = run("connect", "--yes", env=env, timeout=300)
    assert connected.returncode == 0, connected.stderr
    engine = make_engine(warehouse_url)
    timesheets = table_for("timesheet")
    with engine.connect() as conn:
        uuid, minutes = conn.execute(
            select(timesheets.c.uuid, timesheets.c.minutes).order_by(timesheets.c.entry_date.desc()).limit(1)).one()
    admin(sandbox, "PATCH", f"tenants/{tenant}/time/{uuid}", {"minutes": minutes + 15})
    nightly = run("sync", "--tenant", tenant, "--mode", "nightly", env=env, timeout=300)
    assert nightly.returncode == 0, nightly.stderr
    changes = tmp_path / "changes.jsonl"
    changes.write_text("".join(json.dumps(change) + "\n" for change in job_updates(sandbox, tenant, 2)))
    queued = run("export", "add", "--tenant", tenant, "--file", str(changes), env=env)
    assert queued.returncode == 0, queued.stderr
    yield engine
    engine.dispose()


def test_readme_sql_examples_cover_both_dialects():
    named = [dialects for dialects, _ in readme_sql_blocks()]
    assert {"postgresql", "sqlite"} <= set().union(*named)


def test_every_readme_sql_example_runs_on_its_dialect(synced):
    dialect = synced.dialect.name
    ran = 0
    with synced.connect() as conn:
        for dialects, sql in readme_sql_blocks():
            if dialect not in dialects:
                continue
            for statement in statements(sql):
                rows = conn.execute(text(statement)).mappings().all()
                assert rows, f"no rows on {dialect}: {statement}"
                for row in rows:
                    assert row.get("tenant_name", "named") is not None, statement
                    if row.get("hours") is not None:
                        assert_two_places(row["hours"], dialect)
                ran += 1
    assert ran >= 5


def assert_two_places(hours, dialect: str) -> None:
    """What psql and sqlite3 print: 82.00 (NUMERIC with scale 2), 82.0 (a REAL with at most 2 decimals)."""
    if dialect == "postgresql":
        assert isinstance(hours, Decimal) and hours.as_tuple().exponent == -2, hours
    else:
        assert isinstance(hours, float) and f"{hours:.15g}" == f"{round(hours, 2):.15g}", hours
