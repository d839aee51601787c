"""A refresh-token rotation survives any crash, on both dialects, against the sandbox's rotating tokens.

A real process refreshing an expired token is SIGKILLed at each ``tokens.*`` kill point: before the
token call, after Xero's answer (the sandbox has rotated: the stored token is now in its 30-minute
grace), and inside the commit. The interrupted refresh is then redone, (a) by the next process that
needs the tenant's token (it waits for the dead holder's lease, then takes it over) or (b) by
``recover_interrupted_refreshes`` (the recovery sensor's work), and the sandbox's clock is moved past
the grace: the connection must keep working, never ``needs_reauth``.

Default suite: one run per point, recovery path and dialect; ``slow``: ``XPM_KILL_RUNS`` more.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.killpoints import ENV as KILL_ENV
from xpm_pipeline.killpoints import POINTS as ALL_POINTS
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import Secret
from xpm_pipeline.warehouse.control import oauth_grants, tenants
from xpm_pipeline.warehouse.db import make_engine, write_transaction
from xpm_pipeline.xpm.auth import IdentityUnavailable
from xpm_pipeline.xpm.tokens import REFRESH_GRACE, recover_interrupted_refreshes
from xpm_pipeline_tests.kill_support import runs_for
from xpm_pipeline_tests.xpm.test_tokens import KEY, register_issued, sandbox, sandbox_store, stored_refresh, token_calls

__all__ = ["sandbox"]  # the fixture, shared with test_tokens

POINTS = tuple(point for point in ALL_POINTS if point.startswith("tokens."))
assert POINTS == ("tokens.before_refresh_call", "tokens.after_refresh_answer", "tokens.before_refresh_commit")
LEASE_POLL = 1.0  # the survivor's poll step on the simulated clock: 120 polls wait out the 120 s lease

_CHILD = """
import json, sys
from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import IdentityEndpoints
from xpm_pipeline.secrets import Secret, TokenCipher
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.xpm.auth import OAuthClient
from xpm_pipeline.xpm.tokens import TokenStore
a = json.loads(sys.argv[1])
clock = ManualClock(a["now"])
oauth = OAuthClient(IdentityEndpoints.same_origin(a["origin"]), a["client_id"], Secret(a["secret"]), clock=clock)
TokenStore(make_engine(a["db"]), TokenCipher(a["key"]), oauth, clock=clock).access_token(a["tenant"])
"""


def refresh_in_child(url: str, sb, clock, tenant_id: str, kill_at: str) -> int:
    """One process refreshing the tenant's token (its clock at the sandbox's time), killed at ``kill_at``."""
    args = {"db": url, "key": KEY, "origin": sb.base_url, "client_id": sb.client_id, "secret": sb.client_secret,
            "tenant": tenant_id, "now": clock.now().isoformat()}
    child = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env={**os.environ, KILL_ENV: kill_at},
                           capture_output=True, text=True, timeout=120)
    return child.returncode


def grant_row(store, grant_id: str):
    with store.engine.connect() as conn:
        return conn.execute(select(oauth_grants).where(oauth_grants.c.grant_id == grant_id)).one()


def by_next_caller(store, tenant_id: str) -> None:
    """(a) A process needing the token now: it waits for the lease, finds its holder dead, redoes it."""
    waited_from = store.clock.now()
    store.access_token(tenant_id)
    waited = store.clock.now() - waited_from
    assert store.refresh_lease <= waited < store.refresh_lease + timedelta(seconds=5 * LEASE_POLL)


def by_recovery(store, tenant_id: str) -> None:
    """(b) The recovery sensor's function, a while after the lease ended, with nobody touching the tenant."""
    store.clock.advance(store.refresh_lease.total_seconds() + 60)
    result, = recover_interrupted_refreshes(store)
    assert result.recovered and result.error is None, result
    assert recover_interrupted_refreshes(store) == []


RECOVERIES = {"next_caller": by_next_caller, "recovery": by_recovery}


def kill_and_recover(url: str, sb, clock, point: str, recovery: str, nth: int = 1) -> dict:
    """Kill a refresh at ``point``, recover, pass the grace; returns the figures RELIABILITY.md reports."""
    store = sandbox_store(url, sb, clock, lease_poll_seconds=LEASE_POLL)
    try:
        tenant_id = sb.tenant_ids[0]
        grant_id, issued = register_issued(store, sb, tenant_id, expires_at=clock.now() - timedelta(minutes=1))
        before = token_calls(sb)
        assert refresh_in_child(url, sb, clock, tenant_id, f"{point}:{nth}") == -signal.SIGKILL
        killed = grant_row(store, grant_id)
        assert killed.refresh_holder is not None and killed.refresh_generation == 0  # the lease survived the kill
        assert stored_refresh(store, grant_id).reveal() == issued["refresh_token"]  # nothing of the answer stored
        answered = token_calls(sb) - before
        assert answered == (0 if point == "tokens.before_refresh_call" else 1)  # 1: rotated, old token in grace

        started = clock.now()
        RECOVERIES[recovery](store, tenant_id)
        recovered_after = clock.now() - started
        assert recovered_after < REFRESH_GRACE
        row = grant_row(store, grant_id)
        assert (row.refresh_holder, row.refresh_generation, row.status) == (None, 1, "active")
        assert stored_refresh(store, grant_id).reveal() != issued["refresh_token"]

        clock.advance(REFRESH_GRACE.total_seconds() + 60)  # every superseded token is dead now
        token = store.access_token(tenant_id)
        assert [c.tenant_id for c in store.oauth.connections(token)] == [tenant_id]  # a later call succeeds
        assert store.grant_status(tenant_id).status == "active"
        return {"token_calls": token_calls(sb) - before, "recovered_after_s": recovered_after.total_seconds()}
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("recovery", sorted(RECOVERIES))
@pytest.mark.parametrize("point", POINTS)
def test_killed_refresh_is_redone_inside_the_grace(warehouse_url, sandbox, point, recovery):
    sb, clock = sandbox
    figures = kill_and_recover(warehouse_url, sb, clock, point, recovery)
    # killed run's call (if it got that far), the redo, and the refresh 31 minutes later
    assert figures["token_calls"] == (2 if point == "tokens.before_refresh_call" else 3)


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_killed_refresh_is_redone_inside_the_grace_repeatedly(warehouse_url, point):
    """``runs_for`` kills per point, alternating the recovery path, each on a fresh sandbox and grant."""
    runs = min(runs_for(warehouse_url), 3)  # each run a fresh sandbox and grant: 3 per point keeps CI in budget
    figures = []
    for run in range(runs):
        clock = ManualClock()
        with SandboxServer(SandboxConfig(size="small", seed=run, tenants=1, clock=clock), port=0) as sb:
            figures.append(kill_and_recover(warehouse_url, sb, clock, point, sorted(RECOVERIES)[run % 2]))
    slowest = max(f["recovered_after_s"] for f in figures)
    dialect = "sqlite" if warehouse_url.startswith("sqlite") else "postgresql"
    print(f"{point} on {dialect}: {runs} kills, {runs} recovered, 0 needs_reauth, "
          f"redone at most {slowest:.0f} s (simulated) after the kill")


def test_lost_answers_leave_the_refresh_to_be_redone(warehouse_url, sandbox):
    """Every answer lost (Xero rotated, we never heard): the refresh is redone by the recovery function
    inside the grace, so the stored token does not die unnoticed while no process uses the tenant."""
    sb, clock = sandbox
    store = sandbox_store(warehouse_url, sb, clock)
    tenant_id = sb.tenant_ids[0]
    grant_id, issued = register_issued(store, sb, tenant_id, expires_at=clock.now() - timedelta(minutes=1))
    sb.add_fault(path="connect/token", kind="lost_refresh", count=1 + store.lost_response_retries)
    with pytest.raises(IdentityUnavailable):
        store.access_token(tenant_id)
    row = grant_row(store, grant_id)
    assert row.refresh_holder is not None and row.refresh_lease_until <= clock.now() and row.status == "active"
    result, = recover_interrupted_refreshes(store)
    assert result.recovered
    clock.advance(REFRESH_GRACE.total_seconds() + 60)
    assert store.oauth.connections(store.access_token(tenant_id))
    assert store.grant_status(tenant_id).status == "active"


def test_slow_identity_server_does_not_block_warehouse_writers(sqlite_url, sandbox):
    """SQLite has one writer: a refresh must not hold it while the identity server takes its time."""
    sb, clock = sandbox
    store = sandbox_store(sqlite_url, sb, clock)
    tenant_id = sb.tenant_ids[0]
    register_issued(store, sb, tenant_id, expires_at=clock.now() - timedelta(minutes=1))
    sb.add_fault(path="connect/token", kind="latency", seconds=2.0)
    got: list[Secret] = []
    refresher = threading.Thread(target=lambda: got.append(store.access_token(tenant_id)))
    arrived = threading.Event()
    refresher.start()
    while refresher.is_alive() and not arrived.is_set():  # until the token call is at the (slow) server
        if any(e["path"] == "/connect/token" for e in sb.log_entries()):
            arrived.set()
        else:
            arrived.wait(0.01)
    assert arrived.is_set()
    writer = make_engine(sqlite_url, connect_args={"timeout": 0})  # "database is locked" at once if held
    try:
        with write_transaction(writer) as conn:
            conn.execute(update(tenants).where(tenants.c.tenant_id == tenant_id).values(tenant_name="renamed"))
        assert refresher.is_alive()  # the write went through while the token call was in flight
    finally:
        writer.dispose()
        refresher.join()
        store.engine.dispose()
    assert len(got) == 1 and store.oauth.connections(got[0])
