"""The XPM API client: one long-lived httpx client per tenant.

Cross-cutting rules live here once, for every endpoint:
- ``Xero-Tenant-Id`` and a fresh bearer token on every call; a 401 gets one refresh and one retry.
- ``<Status>ERROR</Status>`` (HTTP 200 or 500) raises ``XPMResponseError`` with XPM's own message.
- A 429 sleeps exactly ``Retry-After`` on the injected clock (when short enough) and is not an attempt.
- Connect errors retry with backoff for every call (nothing was sent). After a request was sent,
  reads and full-body PUTs retry; creates do not: an unclear outcome raises ``XPMUnclearOutcome`` so the
  export can read XPM back before any re-send.
- Every response's rate-limit headers go to the observers (the quota ledger subscribes).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Protocol

import httpx

from xpm_pipeline import __version__
from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.entities import ENTITIES, WRITES, Entity, WriteOp
from xpm_pipeline.secrets import Secret, redact
from xpm_pipeline.xpm.errors import (
    XPMAuthError,
    XPMIncompleteAnswer,
    XPMError,
    XPMNotFound,
    XPMParseError,
    XPMRateLimited,
    XPMResponseError,
    XPMServerError,
    XPMUnavailable,
    XPMUnclearOutcome,
)
from xpm_pipeline.xpm.parse import (
    DEFAULT_MAX_BYTES, Parsed, ResponseStatusError, Rows, check_charset, parse_response, parse_status,
)
from xpm_pipeline.xpm.windows import DateWindow, month_windows, split_range
from xpm_pipeline.xpm.writes import build_body, write_path

log = logging.getLogger(__name__)


class TokenProvider(Protocol):
    def access_token(self, tenant_id: str) -> Secret: ...

    def force_refresh(self, tenant_id: str, rejected: Secret) -> Secret: ...


@dataclass(frozen=True)
class CallInfo:
    tenant_id: str
    method: str
    path: str
    direction: str  # "read" | "write"
    entity: str | None = None


@dataclass(frozen=True)
class CallResult:
    status_code: int | None  # None: no response (connect error, timeout, reset)
    day_remaining: int | None = None
    minute_remaining: int | None = None
    app_minute_remaining: int | None = None
    retry_after: float | None = None
    problem: str | None = None
    sent: bool = True  # False only when the connection was never made


class CallObserver(Protocol):
    """Sees every HTTP call: ``before_call`` may wait or raise (quota admission)."""

    def before_call(self, call: CallInfo) -> None: ...

    def after_call(self, call: CallInfo, result: CallResult) -> None: ...


class CallCounter:
    """Counts calls sent per direction; syncs report it as "API calls used"."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.rate_limited = 0

    @property
    def total(self) -> int:
        return self.reads + self.writes

    def before_call(self, call: CallInfo) -> None:
        pass

    def after_call(self, call: CallInfo, result: CallResult) -> None:
        if not result.sent:
            return
        if call.direction == "write":
            self.writes += 1
        else:
            self.reads += 1
        if result.status_code == 429:
            self.rate_limited += 1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # attempts that count: failures, not 429s or the 401 refresh
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_rate_wait: float = 300.0  # a longer Retry-After (the daily limit) raises instead of sleeping
    max_rate_waits: int = 20  # 429 loops per call before giving up

    def backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return delay * (0.5 + random.random() / 2)


@dataclass
class WriteResult:
    op: str
    parsed: Parsed | None
    new_id: str | None  # the UUID (or id) XPM assigned, for creates
    raw_status: int


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(headers: httpx.Headers) -> float:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else 60.0
    except ValueError:
        return 60.0


def _result_of(response: httpx.Response) -> CallResult:
    headers = response.headers
    limited = response.status_code == 429
    return CallResult(
        status_code=response.status_code,
        day_remaining=_int_header(headers, "X-DayLimit-Remaining"),
        minute_remaining=_int_header(headers, "X-MinLimit-Remaining"),
        app_minute_remaining=_int_header(headers, "X-AppMinLimit-Remaining"),
        retry_after=_retry_after(headers) if limited else None,
        problem=(headers.get("X-Rate-Limit-Problem") or "").strip().lower() or None if limited else None,
    )


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_UNCLEAR = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
_TRANSIENT = {502, 503, 504}  # gateways and pre-OAuth2 throttling: retryable whatever the body says
_NOT_FOUND_HINTS = ("unable to find", "not found", "does not exist", "invalid uuid", "no job", "no client")


class _Retry(Exception):
    """Internal: try the call again (``counts`` says whether it uses up an attempt)."""

    def __init__(self, reason: str, counts: bool = True, wait: float | None = None) -> None:
        self.reason = reason
        self.counts = counts
        self.wait = wait


class XPMClient:
    """Calls XPM for one tenant. Thread-compatible, not thread-safe: one per worker."""

    def __init__(
        self,
        *,
        base_url: str,
        tenant_id: str,
        tokens: TokenProvider,
        clock: Clock = SYSTEM_CLOCK,
        observers: Sequence[CallObserver] = (),
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not tenant_id:
            raise ValueError("tenant_id is required")
        self.tenant_id = tenant_id
        self.clock = clock
        self.counter = CallCounter()
        self.observers: list[CallObserver] = [self.counter, *observers]
        self.retry = retry or RetryPolicy()
        self.max_bytes = max_bytes
        self._tokens = tokens
        self._http = httpx.Client(
            base_url=base_url if base_url.endswith("/") else base_url + "/",
            transport=transport,
            timeout=timeout or httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0),
            headers={"Xero-Tenant-Id": tenant_id, "Accept": "text/xml", "User-Agent": f"xpm-pipeline/{__version__}"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"XPMClient(tenant_id={self.tenant_id!r}, base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "XPMClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the one request path ------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        entity: Entity | str | None = None,
        creates: bool = False,
        idempotency_key: str | None = None,
    ) -> Parsed:
        """Send one XPM call (with retries as the module doc says) and parse its response."""
        if isinstance(entity, str):
            entity = ENTITIES[entity]
        info = CallInfo(
            tenant_id=self.tenant_id,
            method=method,
            path=path,
            direction="read" if method == "GET" else "write",
            entity=entity.name if entity else None,
        )
        headers = {"Content-Type": "application/xml"} if body is not None else {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        attempts = 0
        rate_waits = 0
        refreshed = False
        rejected: Secret | None = None
        while True:
            token = self._tokens.force_refresh(self.tenant_id, rejected) if rejected else self._tokens.access_token(
                self.tenant_id
            )
            rejected = None
            try:
                return self._attempt(info, method, path, params, body, entity, creates, headers, token)
            except _Retry as retry:
                if retry.reason == "unauthorized":
                    if refreshed:
                        raise XPMAuthError(
                            f"XPM refused the credentials for tenant {self.tenant_id} after a token refresh; "
                            "reconnect with `xpm-pipeline connect`"
                        ) from None
                    refreshed = True
                    rejected = token
                    continue
                if not retry.counts:
                    rate_waits += 1
                    if rate_waits > self.retry.max_rate_waits:
                        raise XPMRateLimited(
                            f"XPM kept answering 429 for {path}", retry_after=retry.wait or 0, problem=None, path=path
                        ) from None
                    self.clock.sleep(retry.wait or 0)
                    continue
                attempts += 1
                if attempts >= self.retry.max_attempts:
                    raise self._give_up(retry.reason, path) from None
                delay = self.retry.backoff(attempts)
                log.info("XPM %s %s: %s; retry %d in %.1fs", method, path, retry.reason, attempts, delay)
                self.clock.sleep(delay)

    def _give_up(self, reason: str, path: str) -> XPMError:
        if reason.startswith("http "):
            return XPMServerError(f"XPM {path} kept failing ({reason})", status_code=int(reason.split()[1]), path=path)
        if reason.startswith("parse"):
            return XPMParseError(f"XPM {path}: {reason}")
        return XPMUnavailable(f"XPM {path} unreachable: {reason}")

    def _attempt(self, info, method, path, params, body, entity, creates, headers, token: Secret) -> Parsed:
        safe_to_repeat = not creates
        for observer in self.observers:
            observer.before_call(info)
        request_headers = dict(headers)
        request_headers["Authorization"] = f"Bearer {token.reveal()}"
        answered: CallResult | None = None
        try:
            with self._http.stream(method, path, params=params, content=body, headers=request_headers) as response:
                answered = _result_of(response)
                return self._handle(info, response, answered, entity, safe_to_repeat)
        except _NOT_SENT as exc:
            answered = CallResult(status_code=None, sent=False)
            raise _Retry(f"connection failed ({type(exc).__name__})") from None
        except _UNCLEAR as exc:
            answered = answered or CallResult(status_code=None, sent=True)
            if not safe_to_repeat:
                raise XPMUnclearOutcome(
                    f"XPM {method} {path}: no clear answer after sending ({type(exc).__name__}); "
                    "read XPM back before re-sending",
                    path=path,
                ) from None
            raise _Retry(f"no answer ({type(exc).__name__})") from None
        finally:
            # Observers hear of the call once, after its body was read: until then it is in flight.
            self._notify(info, answered or CallResult(status_code=None, sent=True))

    def _notify(self, info: CallInfo, result: CallResult) -> None:
        for observer in self.observers:
            observer.after_call(info, result)

    def _handle(self, info, response: httpx.Response, result: CallResult, entity, safe_to_repeat) -> Parsed:
        status = response.status_code
        path = info.path
        if status == 401:
            response.close()
            raise _Retry("unauthorized")
        if status == 429:
            response.close()
            wait = result.retry_after or 0.0
            if wait > self.retry.max_rate_wait:
                raise XPMRateLimited(
                    f"XPM rate limit ({result.problem or 'unknown'}) for tenant {self.tenant_id}: "
                    f"retry after {wait:.0f}s",
                    retry_after=wait,
                    problem=result.problem,
                    path=path,
                )
            raise _Retry("rate limited", counts=False, wait=wait)
        if status == 200:
            try:
                check_charset(response.headers.get("content-type"))
                return parse_response(response.iter_bytes(), entity, max_bytes=self.max_bytes)
            except ResponseStatusError as exc:
                raise self._response_error(exc.description, status, path) from None
            except XPMParseError as exc:
                if safe_to_repeat and "cap" not in str(exc) and "refused" not in str(exc):
                    raise _Retry(f"parse error: {exc}") from None
                if not safe_to_repeat:
                    raise XPMUnclearOutcome(f"XPM {info.method} {path}: unreadable answer ({exc})", path=path) from None
                raise
            except _UNCLEAR as exc:
                if not safe_to_repeat:
                    raise XPMUnclearOutcome(
                        f"XPM {info.method} {path}: answer cut off ({type(exc).__name__})", path=path
                    ) from None
                raise _Retry(f"answer cut off ({type(exc).__name__})") from None
        body = response.read()[:1_000_000]
        xpm_status, description = parse_status(body)
        if xpm_status == "ERROR" and status not in _TRANSIENT:
            # XPM's application errors (validation, unknown ids) come as 4xx/500 with a reason: final.
            raise self._response_error(description or f"HTTP {status}", status, path)
        if status >= 500:
            if safe_to_repeat:
                raise _Retry(f"http {status}")
            raise XPMUnclearOutcome(
                f"XPM {info.method} {path}: HTTP {status} after sending; read XPM back before re-sending", path=path
            )
        if status == 403:
            raise XPMAuthError(f"XPM refused tenant {self.tenant_id} (HTTP 403): is it still connected?")
        text = redact(body[:200].decode("utf-8", "replace")).replace("\n", " ").strip()
        raise XPMResponseError(f"XPM {path}: HTTP {status} {text}".strip(), status_code=status, path=path)

    @staticmethod
    def _response_error(description: str, status: int, path: str) -> XPMResponseError:
        message = f"XPM {path}: {description}"
        lowered = description.lower()
        cls = XPMNotFound if status == 404 or any(h in lowered for h in _NOT_FOUND_HINTS) else XPMResponseError
        return cls(message, status_code=status, path=path, description=description)

    # --- reads -----------------------------------------------------------------------------------

    def read(self, entity: str, path: str | None = None, **params: Any) -> Parsed:
        spec = ENTITIES[entity]
        clean = {k: v for k, v in params.items() if v is not None}
        path = path or spec.list_path
        parsed = self.call("GET", path, params=clean, entity=spec)
        if spec.list_element not in parsed.elements:  # an empty list is <Jobs/>; no <Jobs> at all is no answer
            raise XPMIncompleteAnswer(f"XPM {path} answered without <{spec.list_element}>")
        return parsed

    def get(self, entity: str, key: str) -> Parsed:
        spec = ENTITIES[entity]
        path = spec.get_path.format(key=key)
        parsed = self.call("GET", path, entity=spec)
        if not len(parsed[entity]):
            raise XPMIncompleteAnswer(f"XPM {path} answered without <{spec.element}>")
        return parsed

    def clients(self, *, modified_since: datetime | None = None, detailed: bool = True) -> Parsed:
        """All clients (archived and deleted included), or those XPM marked modified since (UTC)."""
        since = None
        if modified_since is not None:
            if modified_since.tzinfo is not None:
                modified_since = modified_since.astimezone(timezone.utc).replace(tzinfo=None)
            since = modified_since.strftime("%Y-%m-%dT%H:%M:%S")
        return self.read("client", detailed="true" if detailed else None, modifiedsince=since)

    def clients_paged(self, page_size: int = 500) -> Iterator[Parsed]:
        """Non-archived, non-deleted clients, one page per yield (XPM's token paging)."""
        token = None
        while True:
            page = self.read("client", "client.api/paged-list", pageSize=page_size, pageToken=token)
            yield page
            token = page.extras.get("Pagination/Next") or None
            if not token or len(page["client"]) == 0:
                return

    def client_search(self, query: str) -> Parsed:
        return self.read("client", "client.api/search", query=query)

    def client_groups(self) -> Parsed:
        return self.read("client_group")

    def client_group(self, uuid: str) -> Parsed:
        """One group with its members (``client_group_member`` rows)."""
        return self.get("client_group", uuid)

    def staff(self) -> Parsed:
        return self.read("staff")

    def task_list(self) -> Parsed:
        return self.read("task")

    def current_jobs(self, *, detailed: bool = True) -> Parsed:
        """Active jobs; detailed adds their tasks (``job_task`` rows)."""
        return self.read("job", detailed="true" if detailed else None)

    def jobs_created(self, window: DateWindow, *, detailed: bool = True) -> Parsed:
        return self.read("job", "job.api/list", detailed="true" if detailed else None, **window.params())

    def job(self, number: str) -> Parsed:
        return self.get("job", number)

    def jobs_with_tasks(self, *, complete: bool | None = None, due: date | None = None, start: date | None = None):
        return self.read(
            "job",
            "job.api/tasks",
            complete=None if complete is None else str(complete).lower(),
            due=due.strftime("%Y%m%d") if due else None,
            start=start.strftime("%Y%m%d") if start else None,
        )

    def time_entries(self, window: DateWindow) -> Rows:
        if window.days > 366:
            raise ValueError(f"XPM time windows are at most a year; split {window}")
        return self.read("timesheet", **window.params())["timesheet"]

    def time_entries_between(self, start: date, end: date, *, monthly: bool = True) -> Iterator[tuple[DateWindow, Rows]]:
        """Each window with its entries; monthly windows let a caller checkpoint as it goes."""
        windows = month_windows(start, end) if monthly else split_range(start, end)
        for window in windows:
            yield window, self.time_entries(window)

    def time_by_staff(self, staff_uuid: str, window: DateWindow) -> Rows:
        return self.read("timesheet", f"time.api/staff/{staff_uuid}", **window.params())["timesheet"]

    def time_by_job(self, job_number: str, window: DateWindow | None = None) -> Rows:
        params = window.params() if window else {}
        return self.read("timesheet", f"time.api/job/{job_number}", **params)["timesheet"]

    # --- writes ----------------------------------------------------------------------------------

    def write(
        self, op: str | WriteOp, fields: dict[str, Any] | None = None, *, key: str | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        spec = WRITES[op] if isinstance(op, str) else op
        body = build_body(spec, fields or {}) if spec.body_element else None
        path = write_path(spec, key)
        parsed = self.call(
            spec.method, path, body=body, entity=spec.entity, creates=spec.creates,
            idempotency_key=idempotency_key if spec.creates else None,
        )
        new_id = None
        if spec.creates:
            rows = parsed.rows.get(spec.entity) if spec.entity else None
            if rows is not None and len(rows):
                new_id = rows.column("uuid")[-1]
            else:
                new_id = next(
                    (parsed.extras[k].strip().lower() for k in ("UUID", "ID", "Uuid") if parsed.extras.get(k)), None
                )
        return WriteResult(op=spec.name, parsed=parsed, new_id=new_id, raw_status=200)

    def add_time(self, **fields: Any) -> WriteResult:
        return self.write("time_add", fields)

    def update_time(self, **fields: Any) -> WriteResult:
        return self.write("time_update", fields)

    def delete_time(self, uuid: str) -> WriteResult:
        return self.write("time_delete", key=uuid)

    def update_job(self, **fields: Any) -> WriteResult:
        return self.write("job_update", fields)

    def set_job_state(self, job_number: str, state_code: str, uuid: str | None = None) -> WriteResult:
        return self.write("job_state", {"ID": job_number, "UUID": uuid, "State": state_code})

    def add_job_task(self, **fields: Any) -> WriteResult:
        return self.write("job_task_add", fields)

    def update_job_task(self, **fields: Any) -> WriteResult:
        return self.write("job_task_update", fields)

    def complete_job_task(self, uuid: str) -> WriteResult:
        return self.write("job_task_complete", key=uuid)

    def reopen_job_task(self, uuid: str) -> WriteResult:
        return self.write("job_task_reopen", key=uuid)

    def add_client(self, **fields: Any) -> WriteResult:
        return self.write("client_add", fields)

    def update_client(self, **fields: Any) -> WriteResult:
        return self.write("client_update", fields)
