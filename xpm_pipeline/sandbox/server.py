"""The HTTP server: one loopback origin for XPM, identity, connections and the admin interface.

Stdlib ``ThreadingHTTPServer`` (one daemon thread per connection, HTTP/1.1 keep-alive), so the sandbox
needs no dependency and behaves like a real server to any client: real sockets, real resets, real
latency. Each XPM call goes through the same pipeline, in this order:

1. request log entry; faults of the ``arrival`` stage (``reset``, ``expired_token``, ``rate_limit``);
2. Bearer token (401 ``invalid_token``), ``Xero-Tenant-Id`` (``bad_tenant_status``), scope (403);
3. rate limits (429, uncounted); from here the call counts and holds a concurrency slot;
4. faults of the ``admitted`` stage; the handler under the tenant's lock; output faults (including
   the ``lie_*`` rewrites of an OK answer, ``lies.py``);
5. the response, with ``X-*-Remaining`` headers on every XPM answer.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
import traceback
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xpm_pipeline.sandbox import data, lies, persist
from xpm_pipeline.sandbox import render as R
from xpm_pipeline.sandbox.admin import Admin
from xpm_pipeline.sandbox.api import Call, resource_of, route
from xpm_pipeline.sandbox.config import AdjustableClock, SandboxConfig
from xpm_pipeline.sandbox.errors import XpmError
from xpm_pipeline.sandbox.faults import LIE_KINDS, Faults
from xpm_pipeline.sandbox.identity import (
    Identity, OAuthError, PageError, first_values, parse_form, scope_allows,
)
from xpm_pipeline.sandbox.limits import Limiter

XPM_ROOT = "/practicemanager/"
API_VERSIONS = ("3.0", "3.1")  # XPM answers under both (Xero's own Postman collection calls 3.0)
API_PREFIX = f"{XPM_ROOT}3.1/"
ADMIN_PREFIX = "/_sandbox"
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
ADMIN_REFUSED = ("the /_sandbox/ admin interface answers this machine only; "
                 "start the sandbox with --allow-remote to open it to others")
MAX_REQUEST = 10 * 1024 * 1024
PAD = b"x" * (1 << 20)
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}


class _Dropped(Exception):
    """The connection was closed or reset on purpose (a fault): send nothing more."""


class SandboxServer:
    """A running XPM sandbox. ``with SandboxServer(cfg) as sb:`` or ``start()``/``stop()``."""

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 allow_remote: bool = False) -> None:
        self.config = config or SandboxConfig()
        self.config.validate()
        self.host, self.port = host, port
        self.allow_remote = allow_remote  # admin interface for clients other than this machine (see Admin.allows)
        self.clock = AdjustableClock(self.config.clock)
        self.limiter = Limiter(self.config, self.clock)
        self.faults = Faults(tenants=lambda: self._state().tenants)
        self.request_log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._seq = 0
        self.state = None
        self.identity: Identity | None = None
        self.admin = Admin(self)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.build_seconds = 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    def _load_or_build(self) -> None:
        cfg = self.config
        started = time.perf_counter()
        path = Path(cfg.state_path) if cfg.state_path else None
        if path is not None and path.exists():
            self.state, self.identity, _meta = persist.load(path)
            self.identity.settings = cfg
        else:
            self.state = data.build_state(cfg.size, cfg.seed, cfg.tenants, self.clock.now())
            self.identity = Identity.create(cfg.seed, {t.tenant_id: t.name for t in self.state}, cfg)
        self.build_seconds = time.perf_counter() - started

    def start(self) -> "SandboxServer":
        if self._httpd is not None:
            return self
        if self.state is None:
            self._load_or_build()
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.daemon_threads = True
        httpd.sandbox = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name="xpm-sandbox", daemon=True,
                                        kwargs={"poll_interval": 0.5})
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            # shutdown() waits for the serve loop's next wake-up; a throwaway connection wakes it now
            # instead of after the poll interval (test suites start and stop many sandboxes).
            closer = threading.Thread(target=httpd.shutdown, daemon=True)
            closer.start()
            while closer.is_alive():
                try:
                    socket.create_connection((self.host, self.port), timeout=0.2).close()
                except OSError:
                    pass
                closer.join(0.01)
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.config.state_path and self.state is not None:
            self.save_state()

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def save_state(self) -> Path | None:
        if not self.config.state_path:
            return None
        locks = [t.lock for t in self.state]
        for lock in locks:
            lock.acquire()
        try:
            with self.identity.lock:
                return persist.save(self.config.state_path, self.state, self.identity,
                                    {"size": self.config.size, "seed": self.config.seed})
        finally:
            for lock in reversed(locks):
                lock.release()

    # -- public conveniences --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def client_id(self) -> str:
        return self._identity().client_id

    @property
    def client_secret(self) -> str:
        return self._identity().client_secret

    @property
    def tenant_ids(self) -> list[str]:
        return list(self._state().tenants)

    def _state(self):
        if self.state is None:
            self._load_or_build()
        return self.state

    def _identity(self) -> Identity:
        if self.identity is None:
            self._load_or_build()
        return self.identity

    def tenant(self, tenant_id: str | None = None):
        """One tenant's state (the first one by default)."""
        state = self._state()
        return state.tenant(tenant_id) if tenant_id else next(iter(state))

    def issue_token(self, tenant_id: str, scope: str | None = None) -> dict[str, Any]:
        """A consented connection for ``tenant_id``: same as ``POST /_sandbox/tenants/{id}/token``."""
        scopes = tuple(scope.split()) if scope else None
        return self._identity().issue_for_tenant(tenant_id, self.clock.now(), scopes)

    def add_fault(self, **spec: Any) -> str:
        """Same as ``POST /_sandbox/faults``; returns the fault id."""
        return self.faults.add(spec).id

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def banner(self) -> str:
        return f"XPM sandbox: {self.base_url} client_id={self.client_id} client_secret={self.client_secret}"

    # -- request log ------------------------------------------------------------------------------

    def _log_start(self, method: str, path: str, query: str, tenant_id: str | None) -> dict[str, Any]:
        with self._log_lock:
            self._seq += 1
            entry = {
                "seq": self._seq, "at": self.clock.now().isoformat(), "method": method, "path": path,
                "query": query, "tenant_id": tenant_id.lower() if tenant_id else None, "status": None,
                "fault": None, "bytes": 0, "counted": False,
            }
            self.request_log.append(entry)
            excess = len(self.request_log) - self.config.request_log_limit
            if excess > 0:
                del self.request_log[: max(excess, self.config.request_log_limit // 10)]
            return entry

    def log_entries(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return [dict(e) for e in self.request_log]

    def clear_log(self) -> int:
        with self._log_lock:
            count = len(self.request_log)
            self.request_log.clear()
            return count


def xpm_method(path: str) -> str | None:
    """``client.api/list`` from ``/practicemanager/3.0/client.api/list`` or ``/practicemanager/3.1/...``;
    None for any other path. Both versions reach the same handlers (3.1's UUID identifiers)."""
    for version in API_VERSIONS:
        prefix = f"{XPM_ROOT}{version}/"
        if path.startswith(prefix):
            return path[len(prefix):]
    return None


def _problem(status: int, detail: str) -> bytes:
    """Xero's API gateway answers auth and throttling errors with a JSON problem document."""
    return json.dumps({"Type": None, "Title": TITLES.get(status, "Error"), "Status": status, "Detail": detail,
                       "Instance": None, "Extensions": {}}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "XPM-Sandbox/1"
    sys_version = ""

    @property
    def sb(self) -> SandboxServer:
        return self.server.sandbox  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK adds ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the sandbox has its own log
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return format_datetime(self.sb.clock.now(), usegmt=True)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    # -- plumbing ---------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_REQUEST:
                    raise ValueError("request body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, chunks: list[bytes], content_type: str, headers: dict[str, str] | None = None,
              entry: dict | None = None, declared_length: int | None = None) -> None:
        length = sum(len(c) for c in chunks)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(declared_length if declared_length is not None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if entry is not None:
            entry["status"], entry["bytes"] = status, length
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self, mode: str, seconds: float = 0.0) -> None:
        """End the connection without (the rest of) a response: FIN (``close``), RST (``reset``), or
        silence for ``seconds`` first (``hang``, so the client's read timeout fires)."""
        self.close_connection = True
        sock = self.connection
        try:
            self.wfile.flush()
        except (OSError, ValueError):
            pass
        if mode == "hang":
            time.sleep(seconds)
        try:
            if mode == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        raise _Dropped()

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(413, [str(exc).encode()], "text/plain; charset=utf-8")
            return
        try:
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                self._admin(method, path[len(ADMIN_PREFIX):].strip("/"), url.query, body)
            elif xpm_method(path) is not None:
                self._xpm(method, path, url.query, body)
            elif path.startswith(XPM_ROOT) or path == XPM_ROOT.rstrip("/"):
                self._unknown_xpm_path(method, path, url.query)
            elif path in ("/connect/token", "/connect/revocation", "/identity/connect/authorize",
                          "/identity/connect/authorize/consent") or path == "/connections" \
                    or path.startswith("/connections/"):
                self._identity(method, path, url.query, body)
            else:
                self._send(404, [b"Not found\n"], "text/plain; charset=utf-8")
        except _Dropped:
            pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- admin ------------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, query: str, body: bytes) -> None:
        if not self.sb.admin.allows(self.client_address[0]):
            self._send(403, [json.dumps({"error": ADMIN_REFUSED}).encode()], JSON_TYPE)
            return
        payload = None
        if body.strip():
            try:
                payload = json.loads(body)
            except ValueError:
                self._send(400, [b'{"error": "body is not JSON"}'], JSON_TYPE)
                return
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            status, result = self.sb.admin.dispatch(method, path, params, payload)
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            traceback.print_exc(file=sys.stderr)
            status, result = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._send(status, [json.dumps(result, ensure_ascii=False, default=str).encode("utf-8")], JSON_TYPE)

    # -- XPM --------------------------------------------------------------------------------------

    def _xpm(self, method: str, path: str, query: str, body: bytes) -> None:
        sb = self.sb
        rel = xpm_method(path)
        tenant_hdr = (self.headers.get("Xero-Tenant-Id") or "").strip().lower() or None
        entry = sb._log_start(method, path, query, tenant_hdr)
        known_tenant = tenant_hdr if tenant_hdr in sb.state.tenants else None

        fault = sb.faults.take("arrival", method, rel, tenant_hdr, identity_path=False)
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "reset":
                self._drop("reset")
            headers = sb.limiter.headers(known_tenant)
            if fault.kind == "expired_token":
                headers["WWW-Authenticate"] = 'Bearer error="invalid_token", error_description="The access token expired"'
                self._send(401, [_problem(401, "TokenExpired: token expired")], JSON_TYPE, headers, entry)
                return
            headers.update({"Retry-After": str(fault["retry_after"]), "X-Rate-Limit-Problem": fault["problem"]})
            self._send(429, [_problem(429, f"Rate limit exceeded ({fault['problem']})")], JSON_TYPE, headers, entry)
            return

        now = sb.clock.now()
        grant = sb.identity.bearer(self.headers.get("Authorization"), now)
        if grant is None:
            headers = sb.limiter.headers(known_tenant)
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            self._send(401, [_problem(401, "AuthenticationUnsuccessful")], JSON_TYPE, headers, entry)
            return
        if known_tenant is None or sb.identity.connection_for(known_tenant) is None:
            status = sb.config.bad_tenant_status
            self._send(status, [_problem(status, "AuthenticationUnsuccessful: tenant not connected")], JSON_TYPE,
                       sb.limiter.headers(known_tenant), entry)
            return
        if not scope_allows(grant.scopes, resource_of(rel), method):
            self._send(403, [_problem(403, "insufficient_scope")], JSON_TYPE, sb.limiter.headers(known_tenant), entry)
            return

        decision = sb.limiter.admit(known_tenant)
        if not decision.admitted:
            headers = dict(decision.headers)
            headers.update({"Retry-After": str(decision.retry_after), "X-Rate-Limit-Problem": decision.problem})
            self._send(429, [_problem(429, f"Rate limit exceeded ({decision.problem})")], JSON_TYPE, headers, entry)
            return
        entry["counted"] = True
        try:
            self._xpm_admitted(method, rel, query, body, known_tenant, entry, decision.headers)
        finally:
            sb.limiter.release(known_tenant)

    def _unknown_xpm_path(self, method: str, path: str, query: str) -> None:
        """Not a version the sandbox serves: XPM's XML error document (404, as for an unknown method)."""
        entry = self.sb._log_start(method, path, query, None)
        self._send(404, R.error_document(f"Unknown API path {path}"), XML_TYPE, self.sb.limiter.headers(None), entry)

    def _xpm_admitted(self, method, rel, query, body, tenant_id, entry, headers) -> None:
        sb = self.sb
        fault = sb.faults.take("admitted", method, rel, tenant_id, identity_path=False)
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "latency":
                time.sleep(fault["seconds"])  # real time: the client's timeouts are real
                fault = None
            elif fault.kind == "status":
                self._send(fault["status"], R.error_document(fault["message"]), XML_TYPE, headers, entry)
                return
            elif fault.kind == "error_200":
                self._send(200, R.error_document(fault["message"]), XML_TYPE, headers, entry)
                return

        status, chunks = self._run(method, rel, query, body, tenant_id)
        if fault is None:
            self._send(status, chunks, XML_TYPE, headers, entry)
            return
        kind = fault.kind
        if kind in ("drop_after_commit", "lost_refresh"):
            entry["status"] = None
            self._drop(fault.params.get("mode", "close"), fault.params.get("seconds", 0.0))
        raw = b"".join(chunks)
        if kind == "truncated":
            cut = max(1, min(len(raw) - 1, int(len(raw) * fault["fraction"])))
            while cut > 1 and (raw[cut] & 0xC0) == 0x80:  # keep UTF-8 whole: the XML is what is cut
                cut -= 1
            if fault["mode"] == "connection":
                self._send(status, [raw[:cut]], XML_TYPE, headers, entry, declared_length=len(raw))
                self._drop("close")
            self._send(status, [raw[:cut]], XML_TYPE, headers, entry)
        elif kind == "malformed":
            at = raw.find(b">", len(raw) // 2) + 1 or len(raw) // 2
            self._send(status, [raw[:at] + b"&<" + raw[at:]], XML_TYPE, headers, entry)
        elif kind == "doctype":
            target = "file:///etc/hostname" if fault["entity"] == "external" else None
            decl = (f'<!ENTITY sandbox SYSTEM "{target}">' if target else '<!ENTITY sandbox "entity expanded">')
            head = f'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE Response [{decl}]>\n'.encode()
            marker = raw.find(b"</Status>")
            at = marker + len(b"</Status>") if marker >= 0 else raw.find(b">") + 1
            self._send(status, [head + raw[:at] + b"<Injected>&sandbox;</Injected>" + raw[at:]], XML_TYPE,
                       headers, entry)
        elif kind == "oversized":
            close = raw.rfind(b"</Response>")
            total = fault["bytes"]
            pad = [PAD] * (total // len(PAD)) + ([PAD[: total % len(PAD)]] if total % len(PAD) else [])
            self._send(status, [raw[:close], b"<Padding>", *pad, b"</Padding>", raw[close:]], XML_TYPE, headers,
                       entry)
        elif kind in LIE_KINDS and status == 200:
            self._send(status, [lies.tell(kind, fault.params, raw, self._elsewhere(fault, rel, query, tenant_id))],
                       XML_TYPE, headers, entry)
        else:  # a kind that does not apply to XPM calls (invalid_grant), or a lie about an error: answer normally
            self._send(status, chunks, XML_TYPE, headers, entry)

    def _elsewhere(self, fault, rel, query, tenant_id) -> lies.Elsewhere:
        """Other tenants' view of this call for ``lie_other_tenant``: the fault's source first."""
        sb = self.sb
        others = [t for t in sb.state.tenants if t != tenant_id]
        source = fault.params.get("source_tenant")
        if source in others:
            others.remove(source)
            others.insert(0, source)

        def run(other: str, path: str, params: str) -> bytes | None:
            status, chunks = self._run("GET", path, params, b"", other)  # reads only: never writes elsewhere
            return b"".join(chunks) if status == 200 else None

        return lies.Elsewhere(run=run, call=(rel, query), tenants=others, today=sb.clock.now().date())

    def _run(self, method, rel, query, body, tenant_id) -> tuple[int, list[bytes]]:
        sb = self.sb
        tenant = sb.state.tenants[tenant_id]
        params = {k.lower(): v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            handler, args = route(method, rel)
            with tenant.lock:
                call = Call(method, rel, args, params, body, tenant, sb.clock.now(), sb.config)
                return 200, handler(call)
        except XpmError as exc:
            return exc.status, R.error_document(exc.message)
        except Exception:  # noqa: BLE001 - an XPM-shaped 500, and the traceback for the developer
            traceback.print_exc(file=sys.stderr)
            return 500, R.error_document("An unexpected error occurred")

    # -- identity and connections -------------------------------------------------------------------

    def _identity(self, method: str, path: str, query: str, body: bytes) -> None:
        sb = self.sb
        rel = path.lstrip("/")
        entry = sb._log_start(method, path, query, None)
        fault = sb.faults.take("arrival", method, rel, None, identity_path=True)
        self._json_fault = fault  # truncated/malformed mangle this request's JSON answer
        after_commit = None
        if fault is not None:
            entry["fault"] = fault.kind
            kind = fault.kind
            if kind == "reset":
                self._drop("reset")
            if kind == "latency":
                time.sleep(fault["seconds"])
            elif kind == "invalid_grant":
                self._json(400, {"error": "invalid_grant"}, entry)
                return
            elif kind == "status":
                error = "temporarily_unavailable" if fault["status"] == 503 else "server_error"
                self._json(fault["status"], {"error": error}, entry)
                return
            elif kind == "error_200":
                self._json(200, {"error": fault["message"]}, entry)
                return
            elif kind == "rate_limit":
                self._json(429, {"error": "rate_limited"}, entry, {"Retry-After": str(fault["retry_after"])})
                return
            elif kind == "expired_token":
                self._json(401, {"error": "invalid_token"}, entry, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                return
            elif kind in ("lost_refresh", "drop_after_commit"):
                def after_commit(mode=fault.params.get("mode", "close"), seconds=fault.params.get("seconds", 0.0)):
                    entry["status"] = None
                    self._drop(mode, seconds)
        now = sb.clock.now()
        try:
            if path == "/identity/connect/authorize" and method == "GET":
                params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
                outcome = sb.identity.begin_consent(params, now)
                if isinstance(outcome, str):
                    self._redirect(outcome, entry)
                else:
                    self._html(200, sb.identity.consent_page(outcome), entry)
            elif path == "/identity/connect/authorize/consent" and method == "POST":
                self._redirect(sb.identity.decide(parse_form(body), now), entry)
            elif path == "/connect/token" and method == "POST":
                form = first_values(parse_form(body, self.headers.get("Content-Type")))
                answer = sb.identity.token(form, self.headers.get("Authorization"), now,
                                           after_commit=after_commit)
                self._json(200, answer, entry, {"Cache-Control": "no-store"})
            elif path == "/connect/revocation" and method == "POST":
                form = first_values(parse_form(body, self.headers.get("Content-Type")))
                sb.identity.revoke(form, self.headers.get("Authorization"))
                self._send(200, [], "text/plain", None, entry)
            elif path.startswith("/connections"):
                self._connections(method, path, query, entry)
            else:
                self._json(405, {"error": "method_not_allowed"}, entry)
        except OAuthError as exc:
            if after_commit is not None:
                after_commit()
            self._json(exc.status, exc.body(), entry)
        except PageError as exc:
            self._html(400, f"<!DOCTYPE html><html><body><h1>Error</h1><p>{R.esc(exc.message)}</p></body></html>",
                       entry)

    def _connections(self, method: str, path: str, query: str, entry: dict) -> None:
        sb = self.sb
        grant = sb.identity.bearer(self.headers.get("Authorization"), sb.clock.now())
        if grant is None:
            self._json(401, {"error": "invalid_token"}, entry, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return
        if path == "/connections" and method == "GET":
            params = {k.lower(): v[-1] for k, v in parse_qs(query).items()}
            self._json(200, sb.identity.list_connections(params.get("autheventid")), entry)
        elif path.startswith("/connections/") and method == "DELETE":
            if sb.identity.delete_connection(path[len("/connections/"):]):
                self._send(204, [], "text/plain", None, entry)
            else:
                self._json(404, {"error": "not_found"}, entry)
        else:
            self._json(405, {"error": "method_not_allowed"}, entry)

    def _json(self, status: int, payload: Any, entry: dict, headers: dict | None = None) -> None:
        raw = json.dumps(payload).encode()
        fault = getattr(self, "_json_fault", None)
        if fault is not None and fault.kind == "truncated":
            raw = raw[: max(1, int(len(raw) * fault["fraction"]))]
        elif fault is not None and fault.kind == "malformed":
            raw = raw[:-1] + b",}{"
        self._send(status, [raw], JSON_TYPE, headers, entry)

    def _html(self, status: int, page: str, entry: dict) -> None:
        self._send(status, [page.encode("utf-8")], "text/html; charset=utf-8", None, entry)

    def _redirect(self, location: str, entry: dict) -> None:
        self._send(302, [], "text/plain", {"Location": location}, entry)
