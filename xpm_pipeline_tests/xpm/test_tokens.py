"""TokenStore on both dialects, against a scripted identity server that rotates refresh tokens."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import IdentityEndpoints
from xpm_pipeline.secrets import Secret, TokenCipher, TokenKeyError
from xpm_pipeline.warehouse.control import oauth_grants
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.migrate import migrate
from xpm_pipeline.xpm.auth import Connection, IdentityUnavailable, OAuthClient, TokenSet
from xpm_pipeline.xpm.tokens import REFRESH_TOKEN_LIFETIME, ReauthRequired, TenantNotConnected, TokenStore

ENDPOINTS = IdentityEndpoints.same_origin("http://identity.test")
KEY = TokenCipher.generate_key()


class FakeIdentity:
    """Xero identity in miniature: rotating refresh tokens with a grace period, scriptable faults."""

    def __init__(self, clock: ManualClock):
        self.clock = clock
        self.serial = 0
        self.live: dict[str, object] = {}  # refresh token -> superseded_at (None while current)
        self.faults: list[str] = []  # "lost" (rotate, then drop the answer), "down", "invalid_grant"
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def issue(self) -> TokenSet:
        with self.lock:
            return self._issue()

    def _issue(self) -> TokenSet:
        self.serial += 1
        refresh = f"refresh-{self.serial}"
        self.live[refresh] = None
        return TokenSet(Secret(f"access-{self.serial}"), Secret(refresh),
                        self.clock.now() + timedelta(seconds=1800), ("practicemanager", "offline_access"))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        with self.lock:
            self.calls.append((request.url.path, form))
            fault = self.faults.pop(0) if self.faults else None
            if fault == "down":
                raise httpx.ConnectError("down")
            if request.url.path.startswith("/connections"):
                return httpx.Response(204)
            if request.url.path == "/connect/revocation":
                self.live.pop(form["token"], None)
                return httpx.Response(200)
            old = form.get("refresh_token")
            superseded = self.live.get(old, "missing")
            valid = superseded is None or (
                superseded != "missing" and self.clock.now() - superseded < timedelta(minutes=30))
            if fault == "invalid_grant" or not valid:
                return httpx.Response(400, json={"error": "invalid_grant"})
            if superseded is None:
                self.live[old] = self.clock.now()
            new = self._issue()
            if fault == "lost":
                raise httpx.ReadTimeout("answer lost")
            return httpx.Response(200, json={
                "access_token": new.access_token.reveal(), "refresh_token": new.refresh_token.reveal(),
                "expires_in": 1800, "token_type": "Bearer", "scope": "practicemanager offline_access"})

    def token_calls(self) -> int:
        return sum(1 for path, _ in self.calls if path == "/connect/token")


class Env:
    def __init__(self, url: str):
        self.clock = ManualClock()
        self.identity = FakeIdentity(self.clock)
        self.engine = make_engine(url)
        migrate(self.engine, clock=self.clock)
        self.oauth = OAuthClient(ENDPOINTS, "client-1", Secret("client-secret-XYZ"),
                                 http=httpx.Client(transport=httpx.MockTransport(self.identity)), clock=self.clock)
        self.store = TokenStore(self.engine, TokenCipher(KEY), self.oauth, clock=self.clock)

    def connect(self, *tenant_ids: str) -> tuple[str, TokenSet]:
        token_set = self.identity.issue()
        conns = [Connection(id=f"conn-{t}", tenant_id=t, tenant_type="PRACTICEMANAGER", tenant_name=f"Firm {t}",
                            auth_event_id="ev") for t in tenant_ids]
        return self.store.register(token_set, conns, "client-1"), token_set

    def grant_row(self, grant_id: str):
        with self.engine.connect() as conn:
            return conn.execute(select(oauth_grants).where(oauth_grants.c.grant_id == grant_id)).one()


@pytest.fixture
def env(warehouse_url) -> Env:
    return Env(warehouse_url)


def test_valid_stored_token_is_used_without_calling_identity(env):
    _, issued = env.connect("t1")
    assert env.store.access_token("t1") == issued.access_token
    assert env.identity.calls == []


def test_token_inside_the_margin_is_refreshed_and_rotation_is_stored(env):
    grant_id, issued = env.connect("t1")
    env.clock.advance(1800 - 299)  # 299 s left, margin 300 s
    token = env.store.access_token("t1")
    assert token == Secret("access-2") and env.identity.token_calls() == 1
    row = env.grant_row(grant_id)
    assert env.store.cipher.decrypt(row.refresh_token_enc) == Secret("refresh-2")
    assert row.refreshed_at == env.clock.now() and row.refresh_issued_at == env.clock.now()
    assert row.access_expires_at == env.clock.now() + timedelta(seconds=1800)
    assert row.status == "active" and row.last_error is None
    assert env.store.access_token("t1") == token and env.identity.token_calls() == 1


def test_tenants_of_one_consent_share_one_token_set(env):
    grant_id, _ = env.connect("t1", "t2")
    env.clock.advance(3600)
    assert env.store.access_token("t1") == env.store.access_token("t2")
    assert env.identity.token_calls() == 1
    with env.engine.connect() as conn:
        assert conn.execute(select(oauth_grants.c.grant_id)).scalars().all() == [grant_id]


def test_force_refresh_refreshes_the_rejected_token(env):
    _, issued = env.connect("t1")
    assert env.store.force_refresh("t1", issued.access_token) == Secret("access-2")
    assert env.identity.token_calls() == 1


def test_force_refresh_uses_a_token_someone_else_already_refreshed(env):
    _, issued = env.connect("t1")
    fresh = env.store.force_refresh("t1", issued.access_token)
    assert env.store.force_refresh("t1", issued.access_token) == fresh  # a second worker, same stale token
    assert env.identity.token_calls() == 1


def test_lost_refresh_answer_is_retried_with_the_old_token(env):
    grant_id, issued = env.connect("t1")
    env.clock.advance(3600)
    env.identity.faults = ["lost"]
    token = env.store.access_token("t1")
    sent = [form["refresh_token"] for path, form in env.identity.calls if path == "/connect/token"]
    assert sent == ["refresh-1", "refresh-1"]  # same old token, inside the 30-minute grace
    assert token == Secret("access-3")
    assert env.store.cipher.decrypt(env.grant_row(grant_id).refresh_token_enc) == Secret("refresh-3")
    assert env.clock.sleeps  # backed off on the injected clock
    env.clock.advance(3600)
    assert env.store.access_token("t1") == Secret("access-4")  # the stored refresh token works


def test_refresh_gives_up_after_bounded_retries(env):
    grant_id, _ = env.connect("t1")
    env.clock.advance(3600)
    env.identity.faults = ["down"] * 10
    with pytest.raises(IdentityUnavailable):
        env.store.access_token("t1")
    assert env.identity.token_calls() == 1 + env.store.lost_response_retries
    row = env.grant_row(grant_id)
    assert row.status == "active" and "unreachable" in row.last_error
    env.identity.faults = []
    assert env.store.access_token("t1") == Secret("access-2")
    assert env.grant_row(grant_id).last_error is None


def test_invalid_grant_marks_needs_reauth_once_and_never_loops(env):
    grant_id, _ = env.connect("t1")
    env.clock.advance(3600)
    env.identity.faults = ["invalid_grant"]
    with pytest.raises(ReauthRequired) as info:
        env.store.access_token("t1")
    message = str(info.value)
    assert "t1" in message and "xpm-pipeline connect" in message and "\n" not in message
    assert env.identity.token_calls() == 1
    row = env.grant_row(grant_id)
    assert row.status == "needs_reauth" and "invalid_grant" in row.last_error
    for call in (lambda: env.store.access_token("t1"), lambda: env.store.force_refresh("t1", Secret("x"))):
        with pytest.raises(ReauthRequired):
            call()
    assert env.identity.token_calls() == 1
    assert env.store.grant_status("t1").status == "needs_reauth"


def test_reconnect_repoints_tenant_and_retires_the_old_grant(env):
    old_grant, _ = env.connect("t1")
    env.identity.faults = ["invalid_grant"]
    env.clock.advance(3600)
    with pytest.raises(ReauthRequired):
        env.store.access_token("t1")
    new_grant, issued = env.connect("t1", "t2")
    assert env.store.access_token("t1") == issued.access_token
    records = {t.tenant_id: t for t in env.store.tenants()}
    assert set(records) == {"t1", "t2"} and {t.grant_id for t in records.values()} == {new_grant}
    old = env.grant_row(old_grant)
    assert old.status == "revoked" and old.refresh_token_enc is None and old.access_token_enc is None


def test_tokens_are_encrypted_at_rest_and_need_the_right_key(env):
    grant_id, issued = env.connect("t1")
    with env.engine.connect() as conn:
        raw = " ".join(str(v) for v in conn.execute(select(oauth_grants)).one())
    assert issued.access_token.reveal() not in raw and issued.refresh_token.reveal() not in raw
    row = env.grant_row(grant_id)
    assert TokenCipher(KEY).decrypt(row.refresh_token_enc) == issued.refresh_token
    with pytest.raises(TokenKeyError):
        TokenCipher(TokenCipher.generate_key()).decrypt(row.refresh_token_enc)
    rotated = TokenCipher(f"{TokenCipher.generate_key()},{KEY}")  # new key first, old still readable
    assert rotated.decrypt(row.access_token_enc) == issued.access_token


def test_register_stores_tenant_metadata_and_slot(env):
    import zlib

    env.connect("t1")
    record, = env.store.tenants()
    assert (record.tenant_name, record.tenant_type, record.connection_id) == ("Firm t1", "PRACTICEMANAGER", "conn-t1")
    assert record.slot == zlib.crc32(b"t1") % 4 and record.status == "active"
    assert record.connected_at == env.clock.now() and record.disconnected_at is None


def test_register_refuses_a_consent_without_refresh_token(env):
    token_set = TokenSet(Secret("a"), None, env.clock.now(), ())
    with pytest.raises(ValueError, match="offline_access"):
        env.store.register(token_set, [Connection("c", "t", "PRACTICEMANAGER", "n")], "client-1")


def test_disconnect_removes_connection_and_revokes_the_last_use(env):
    grant_id, _ = env.connect("t1", "t2")
    assert env.store.disconnect("t1") is True
    paths = [path for path, _ in env.identity.calls]
    assert paths == ["/connections/conn-t1"]
    assert env.grant_row(grant_id).status == "active"
    assert env.store.disconnect("t2") is True
    assert [path for path, _ in env.identity.calls][-2:] == ["/connections/conn-t2", "/connect/revocation"]
    assert env.grant_row(grant_id).status == "revoked"
    assert env.store.tenants() == []
    assert {t.status for t in env.store.tenants(active_only=False)} == {"disconnected"}
    with pytest.raises(TenantNotConnected):
        env.store.access_token("t1")
    assert env.store.disconnect("t1") is False  # idempotent


def test_unknown_tenant_is_not_connected(env):
    with pytest.raises(TenantNotConnected, match="xpm-pipeline connect"):
        env.store.access_token("nope")


def test_grant_status_estimates_refresh_token_expiry(env):
    _, issued = env.connect("t1")
    start = env.clock.now()
    status = env.store.grant_status("t1")
    assert status.access_expires_at == issued.expires_at and status.refreshed_at is None
    assert status.refresh_expires_at == start + REFRESH_TOKEN_LIFETIME
    assert not status.refresh_expires_within(env.clock.now(), days=7)
    assert status.refresh_expires_within(start + timedelta(days=54), days=7)
    env.clock.advance(3600)
    env.store.access_token("t1")
    assert env.store.grant_status("t1").refresh_expires_at == env.clock.now() + REFRESH_TOKEN_LIFETIME


def test_refresh_idle_refreshes_only_week_old_grants(env):
    idle_grant, _ = env.connect("t1")
    env.clock.advance(timedelta(days=8).total_seconds())
    busy_grant, _ = env.connect("t2")
    results = env.store.refresh_idle(older_than_days=7)
    assert [(r.grant_id, r.refreshed) for r in results] == [(idle_grant, True)]
    assert env.grant_row(idle_grant).refreshed_at == env.clock.now()
    assert env.grant_row(busy_grant).refreshed_at is None
    assert env.store.refresh_idle(older_than_days=7) == []


def test_refresh_idle_reports_dead_consents_without_raising(env):
    grant_id, _ = env.connect("t1")
    env.clock.advance(timedelta(days=8).total_seconds())
    env.identity.faults = ["invalid_grant"]
    result, = env.store.refresh_idle()
    assert not result.refreshed and "xpm-pipeline connect" in result.error
    assert env.store.refresh_idle() == []  # needs_reauth grants are no longer "active"


def test_concurrent_threads_refresh_once(env):
    env.connect("t1")
    env.clock.advance(3600)
    barrier = threading.Barrier(4)
    got, errors = [], []

    def worker():
        try:
            barrier.wait()
            got.append(env.store.access_token("t1"))
        except Exception as exc:  # pragma: no cover - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and len(set(got)) == 1
    assert env.identity.token_calls() == 1


def test_no_credential_in_logs_errors_or_reprs(env, caplog):
    caplog.set_level(logging.DEBUG)
    grant_id, issued = env.connect("t1")
    env.clock.advance(3600)
    env.identity.faults = ["lost", "down"]
    env.store.access_token("t1")
    env.clock.advance(3600)
    env.identity.faults = ["invalid_grant"]
    with pytest.raises(ReauthRequired) as info:
        env.store.access_token("t1")
    row = env.grant_row(grant_id)
    texts = [caplog.text, str(info.value), repr(info.value), repr(env.store), row.last_error,
             repr(env.store.grant_status("t1"))]
    secrets = ["client-secret-XYZ"] + [f"refresh-{i}" for i in range(1, 6)] + [f"access-{i}" for i in range(1, 6)]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


def test_disconnect_of_a_dead_consent_is_local_only(env):
    grant_id, _ = env.connect("t1")
    env.clock.advance(3600)
    env.identity.faults = ["invalid_grant"]
    assert env.store.disconnect("t1") is True
    assert env.identity.token_calls() == 1 and not any(p.startswith("/connections") for p, _ in env.identity.calls)
    assert env.store.tenants() == []
    assert env.grant_row(grant_id).refresh_token_enc is None


def test_disconnect_of_an_unknown_tenant_is_false(env):
    assert env.store.disconnect("nope") is False


# -- against the real sandbox over loopback ---------------------------------------------------------


@pytest.fixture
def sandbox():
    """A running sandbox (two practices) on a ManualClock shared with the test."""
    sandbox_module = pytest.importorskip("xpm_pipeline.sandbox")
    clock = ManualClock()
    config = sandbox_module.SandboxConfig(size="small", seed=1, tenants=2, clock=clock)
    with sandbox_module.SandboxServer(config, port=0) as sb:
        yield sb, clock


def sandbox_store(url: str, sb, clock, **kwargs) -> TokenStore:
    engine = make_engine(url)
    migrate(engine, clock=clock)
    oauth = OAuthClient(IdentityEndpoints.same_origin(sb.base_url), sb.client_id, Secret(sb.client_secret), clock=clock)
    return TokenStore(engine, TokenCipher(KEY), oauth, clock=clock, **kwargs)


def register_issued(store: TokenStore, sb, tenant_id: str, *, expires_at=None) -> tuple[str, dict]:
    """A consented connection from the sandbox's admin hook, stored as ``connect`` would store it."""
    issued = sb.issue_token(tenant_id)
    connections = [c for c in store.oauth.connections(Secret(issued["access_token"])) if c.tenant_id == tenant_id]
    token_set = TokenSet(Secret(issued["access_token"]), Secret(issued["refresh_token"]),
                         expires_at or store.clock.now() + timedelta(seconds=issued["expires_in"]),
                         tuple(issued["scope"].split()))
    return store.register(token_set, connections, sb.client_id), issued


def token_calls(sb) -> int:
    return sum(1 for entry in sb.request_log if entry["path"] == "/connect/token")


def stored_refresh(store: TokenStore, grant_id: str) -> Secret:
    with store.engine.connect() as conn:
        enc = conn.execute(select(oauth_grants.c.refresh_token_enc).where(oauth_grants.c.grant_id == grant_id)).scalar()
    return store.cipher.decrypt(enc)


def _access_token_in_child(url, key, origin, client_id, client_secret, tenant_id, now_iso, barrier, results):
    """One worker process: its own engine, client and clock (fixed at the sandbox's time)."""
    clock = ManualClock(now_iso)
    engine = make_engine(url)
    oauth = OAuthClient(IdentityEndpoints.same_origin(origin), client_id, Secret(client_secret), clock=clock)
    store = TokenStore(engine, TokenCipher(key), oauth, clock=clock)
    with engine.connect():
        pass  # connect before lining up, so both start the refresh at the same moment
    barrier.wait(timeout=60)
    try:
        results.put(("ok", store.access_token(tenant_id).reveal()))
    except Exception as exc:  # reported to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_rotation_survives_two_processes_refreshing_at_once(warehouse_url, sandbox):
    """Acceptance: two OS processes, one expired token, exactly one refresh, both get the same token."""
    import multiprocessing

    sb, clock = sandbox
    store = sandbox_store(warehouse_url, sb, clock)
    tenant_id = sb.tenant_ids[0]
    grant_id, issued = register_issued(store, sb, tenant_id, expires_at=clock.now() - timedelta(minutes=1))
    before = token_calls(sb)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    args = (warehouse_url, KEY, sb.base_url, sb.client_id, sb.client_secret, tenant_id, clock.now().isoformat(),
            barrier, results)
    procs = [ctx.Process(target=_access_token_in_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    (_, first), (_, second) = outcomes
    assert first == second != issued["access_token"]
    assert token_calls(sb) - before == 1
    new_refresh = stored_refresh(store, grant_id)
    assert new_refresh.reveal() != issued["refresh_token"]
    assert store.access_token(tenant_id) == Secret(first)
    # The stored refresh token is the live one: it still works after the old one's grace has ended.
    clock.advance(31 * 60)
    assert store.access_token(tenant_id).reveal() not in (first, issued["access_token"])
    assert token_calls(sb) - before == 2


def test_lost_refresh_answer_against_the_sandbox(warehouse_url, sandbox):
    sb, clock = sandbox
    store = sandbox_store(warehouse_url, sb, clock)
    tenant_id = sb.tenant_ids[0]
    grant_id, issued = register_issued(store, sb, tenant_id)
    clock.advance(1800)
    httpx.post(f"{sb.base_url}/_sandbox/faults", json={"path": "connect/token", "kind": "lost_refresh"}).raise_for_status()
    before = token_calls(sb)
    token = store.access_token(tenant_id)
    assert token_calls(sb) - before == 2  # the lost answer, then the retry with the same old token
    assert [c.tenant_id for c in store.oauth.connections(token)]  # the token works
    clock.advance(31 * 60)  # past the grace of every superseded token: only the stored one still works
    assert store.access_token(tenant_id) != token
    assert store.grant_status(tenant_id).status == "active"


def test_superseded_refresh_token_needs_reauth_once(warehouse_url, sandbox):
    """What rotation protects against: someone else rotated, the grace ended, ours is dead."""
    sb, clock = sandbox
    store = sandbox_store(warehouse_url, sb, clock)
    tenant_id = sb.tenant_ids[0]
    grant_id, issued = register_issued(store, sb, tenant_id)
    store.oauth.refresh(Secret(issued["refresh_token"]))  # a rogue refresh that is never stored
    clock.advance(31 * 60)
    before = token_calls(sb)
    with pytest.raises(ReauthRequired, match="xpm-pipeline connect"):
        store.access_token(tenant_id)
    with pytest.raises(ReauthRequired):
        store.access_token(tenant_id)
    assert token_calls(sb) - before == 1
    status = store.grant_status(tenant_id)
    assert status.status == "needs_reauth" and "invalid_grant" in status.last_error
    assert issued["refresh_token"] not in status.last_error


def test_injected_invalid_grant_against_the_sandbox(warehouse_url, sandbox):
    sb, clock = sandbox
    store = sandbox_store(warehouse_url, sb, clock)
    tenant_id = sb.tenant_ids[1]
    register_issued(store, sb, tenant_id)
    clock.advance(1800)
    sb.add_fault(path="connect/token", kind="invalid_grant")
    before = token_calls(sb)
    for _ in range(3):
        with pytest.raises(ReauthRequired):
            store.access_token(tenant_id)
    assert token_calls(sb) - before == 1


def test_disconnect_against_the_sandbox(warehouse_url, sandbox):
    sb, clock = sandbox
    store = sandbox_store(warehouse_url, sb, clock)
    tenant_id = sb.tenant_ids[0]
    grant_id, issued = register_issued(store, sb, tenant_id)
    assert store.disconnect(tenant_id) is True
    paths = [e["path"] for e in sb.request_log]
    assert paths[-2].startswith("/connections/") and paths[-1] == "/connect/revocation"
    with pytest.raises(Exception):
        store.oauth.refresh(Secret(issued["refresh_token"]))  # revoked at the sandbox too
