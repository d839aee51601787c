"""Fault injection: make the next N matching calls fail in one of the ways real networks and XPM fail.

A fault matches on the request path (a substring of it, or a glob when the pattern holds ``*?[``;
XPM paths are matched without the ``/practicemanager/3.1/`` base, e.g. ``time.api/add``, identity
paths without the leading slash, e.g. ``connect/token``), optionally the HTTP method and the
``Xero-Tenant-Id``. It skips the first ``after`` matching calls, then fires on the next ``count``.

When a fault is consulted (its *stage*) decides what "a matching call" means:

* ``arrival`` (``reset``, ``expired_token``, ``rate_limit``, and every fault on identity paths):
  every matching call that arrives;
* ``admitted`` (all other kinds on XPM paths): only calls that passed authentication, the tenant
  check and the rate limits, i.e. calls XPM would have counted and executed.

The ``lie_*`` kinds (``LIE_KINDS``) answer a well-formed HTTP 200 ``<Status>OK</Status>`` document
whose list lies (``lies.py``): they are admitted-stage faults like the other output faults.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

ARRIVAL_KINDS = {"reset", "expired_token", "rate_limit"}
KINDS: dict[str, dict[str, Any]] = {
    # kind -> parameters and defaults
    "drop_after_commit": {"mode": "close", "seconds": 30.0},  # mode: close | reset | hang
    "reset": {},
    "latency": {"seconds": 1.0},
    "status": {"status": 500, "message": "An error has occurred"},
    "error_200": {"message": "An error has occurred"},
    "truncated": {"fraction": 0.5, "mode": "body"},  # mode: body (complete HTTP, cut XML) | connection
    "malformed": {},
    "doctype": {"entity": "internal"},  # internal | external
    "oversized": {"bytes": 64 * 1024 * 1024},
    "rate_limit": {"retry_after": 60, "problem": "minute"},
    "expired_token": {},
    "invalid_grant": {},
    "lost_refresh": {"mode": "close"},  # close | reset
    "lie_missing_list": {},
    "lie_empty_list": {},
    "lie_cut": {"fraction": 0.1},  # keep the first ceil(n * fraction) items
    "lie_duplicate": {},
    "lie_other_tenant": {"source_tenant": None},  # whose items (default: the first other tenant with some)
}
LIE_KINDS = frozenset(k for k in KINDS if k.startswith("lie_"))
CHOICES = {
    ("drop_after_commit", "mode"): ("close", "reset", "hang"),
    ("truncated", "mode"): ("body", "connection"),
    ("doctype", "entity"): ("internal", "external"),
    ("lost_refresh", "mode"): ("close", "reset"),
    ("rate_limit", "problem"): ("minute", "day", "concurrent", "appminute"),
}


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    id: str
    path: str
    kind: str
    method: str | None = None
    tenant: str | None = None
    count: int = 1
    after: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0  # matching calls at its stage so far
    fired: int = 0

    def stage(self, identity_path: bool) -> str:
        return "arrival" if identity_path or self.kind in ARRIVAL_KINDS else "admitted"

    def matches(self, method: str, path: str, tenant: str | None) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.tenant and (tenant or "").lower() != self.tenant.lower():
            return False
        pattern = self.path.lstrip("/")
        if any(ch in pattern for ch in "*?["):
            return fnmatch.fnmatchcase(path, pattern)
        return pattern in path

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["remaining"] = max(0, self.count - self.fired)
        return out

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


class Faults:
    def __init__(self, tenants: Callable[[], Iterable[str]] | None = None) -> None:
        self._tenants = tenants  # the sandbox's tenant ids, to check lie_other_tenant's source
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next = 1

    def add(self, spec: dict[str, Any]) -> Fault:
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in KINDS:
            raise FaultSpecError(f"kind must be one of {', '.join(sorted(KINDS))}, got {kind!r}")
        path = spec.pop("path", None)
        if not isinstance(path, str) or not path.strip():
            raise FaultSpecError("path is required (substring or glob of the request path)")
        method, tenant = spec.pop("method", None), spec.pop("tenant", None)
        count, after = spec.pop("count", 1), spec.pop("after", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultSpecError("count must be an integer >= 1")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise FaultSpecError("after must be an integer >= 0")
        params = dict(KINDS[kind])
        for name, value in spec.items():
            if name not in params:
                raise FaultSpecError(f"{kind} takes no parameter {name!r} (takes: {', '.join(params) or 'none'})")
            default = params[name]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise FaultSpecError(f"{name} must be a non-negative number")
                value = type(default)(value) if isinstance(default, float) else int(value)
            choices = CHOICES.get((kind, name))
            if choices and value not in choices:
                raise FaultSpecError(f"{name} must be one of {', '.join(choices)}")
            params[name] = value
        if kind == "status" and not 400 <= params["status"] <= 599:
            raise FaultSpecError("status must be an HTTP error status (400-599)")
        if kind == "truncated" and not 0 <= params["fraction"] < 1:
            raise FaultSpecError("fraction must be in [0, 1)")
        if kind == "lie_cut" and not 0 < params["fraction"] < 1:
            raise FaultSpecError("fraction must be in (0, 1)")
        if kind == "lie_other_tenant":
            params["source_tenant"] = self._check_source(params["source_tenant"], tenant)
        with self._lock:
            fault = Fault(id=f"f{self._next}", path=path.strip(), kind=kind, method=method, tenant=tenant,
                          count=count, after=after, params=params)
            self._next += 1
            self._faults.append(fault)
            return fault

    def _check_source(self, source: Any, tenant: str | None) -> str | None:
        known = [t.lower() for t in self._tenants()] if self._tenants else []
        if self._tenants and len(known) < 2:
            raise FaultSpecError("lie_other_tenant needs a sandbox with at least 2 tenants")
        if source is None:
            return None
        if not isinstance(source, str) or (self._tenants and source.strip().lower() not in known):
            raise FaultSpecError(f"source_tenant must be a tenant of this sandbox, got {source!r}")
        if tenant and tenant.strip().lower() == source.strip().lower():
            raise FaultSpecError("source_tenant must differ from the tenant the fault matches")
        return source.strip().lower()

    def take(self, stage: str, method: str, path: str, tenant: str | None, *, identity_path: bool) -> Fault | None:
        """The fault to apply to this call, if any; counts the call for every matching fault."""
        chosen = None
        with self._lock:
            for fault in self._faults:
                if fault.fired >= fault.count or fault.stage(identity_path) != stage:
                    continue
                if not fault.matches(method, path, tenant):
                    continue
                fault.seen += 1
                if chosen is None and fault.seen > fault.after:
                    fault.fired += 1
                    chosen = fault
        return chosen

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_json() for f in self._faults]

    def clear(self) -> int:
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before
