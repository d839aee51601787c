"""The client's cross-cutting rules, on a scripted transport (the sandbox tests cover the real wire)."""

from __future__ import annotations

import httpx
import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.secrets import Secret
from xpm_pipeline.xpm.client import RetryPolicy, XPMClient
from xpm_pipeline.xpm.errors import (
    XPMAuthError,
    XPMNotFound,
    XPMRateLimited,
    XPMResponseError,
    XPMUnavailable,
    XPMUnclearOutcome,
)

OK_STAFF = b"<Response><Status>OK</Status><StaffList><Staff><UUID>60de7bad-f207-40b3-af63-478159fdef1a</UUID><Name>Ben</Name></Staff></StaffList></Response>"
OK_TIME = (
    b"<Response><Status>OK</Status><Time><UUID>f30c8127-b101-455c-882e-92d856bc5576</UUID><Job><ID>J1</ID></Job>"
    b"<Task><UUID>301e019f-c41e-45cf-aa2f-10569900b82c</UUID></Task><Staff><UUID>d47b74e4-cc6c-41c5-b880-e60ac2f9e79c</UUID>"
    b"</Staff><Date>2026-08-14T00:00:00</Date><Minutes>60</Minutes></Time></Response>"
)
TIME_FIELDS = dict(Job="J1", TaskUUID="t", StaffUUID="s", Date="2026-08-14", Minutes=60)


class Tokens:
    def __init__(self):
        self.current = Secret("access-1")
        self.refreshes = 0

    def access_token(self, tenant_id):
        return self.current

    def force_refresh(self, tenant_id, rejected):
        self.refreshes += 1
        self.current = Secret(f"access-{self.refreshes + 1}")
        return self.current


class Script:
    """Answers requests from a list of responses (or exceptions) and records what was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def xml(status: int, body: bytes, **headers) -> httpx.Response:
    base = {"Content-Type": "text/xml", "X-DayLimit-Remaining": "9000", "X-MinLimit-Remaining": "59",
            "X-AppMinLimit-Remaining": "9999"}
    base.update({k.replace("_", "-"): str(v) for k, v in headers.items()})
    return httpx.Response(status, content=body, headers=base)


class Recorder:
    def __init__(self):
        self.results = []

    def before_call(self, call):
        pass

    def after_call(self, call, result):
        self.results.append((call, result))


def make(script: Script, clock=None, **kw):
    tokens = Tokens()
    recorder = Recorder()
    client = XPMClient(
        base_url="http://xpm.test/practicemanager/3.1/", tenant_id="tenant-1", tokens=tokens,
        clock=clock or ManualClock(), observers=[recorder], transport=httpx.MockTransport(script), **kw,
    )
    return client, tokens, recorder


def test_headers_on_every_call_and_observer_sees_limits():
    script = Script(xml(200, OK_STAFF))
    client, _, recorder = make(script)
    rows = client.staff()["staff"]
    assert rows.records()[0]["name"] == "Ben"
    request = script.requests[0]
    assert request.headers["Xero-Tenant-Id"] == "tenant-1"
    assert request.headers["Authorization"] == "Bearer access-1"
    assert request.url.path == "/practicemanager/3.1/staff.api/list"
    (_, result), = recorder.results
    assert (result.day_remaining, result.minute_remaining, result.app_minute_remaining) == (9000, 59, 9999)


def test_429_waits_exactly_retry_after_and_is_not_an_attempt():
    clock = ManualClock()
    limited = [xml(429, b"", Retry_After=17, X_Rate_Limit_Problem="Minute") for _ in range(6)]
    script = Script(*limited, xml(200, OK_STAFF))
    client, _, recorder = make(script, clock=clock, retry=RetryPolicy(max_attempts=2))
    start = clock.now()
    client.staff()
    assert clock.sleeps == [17.0] * 6
    assert (clock.now() - start).total_seconds() == 17 * 6
    assert recorder.results[0][1].problem == "minute"
    assert client.counter.rate_limited == 6


def test_429_longer_than_allowed_raises_with_the_wait():
    script = Script(xml(429, b"", Retry_After=67000, X_Rate_Limit_Problem="day"))
    client, _, _ = make(script)
    with pytest.raises(XPMRateLimited) as caught:
        client.staff()
    assert caught.value.retry_after == 67000 and caught.value.problem == "day"


def test_200_with_error_status_raises_typed_error():
    body = b"<Response><Status>ERROR</Status><ErrorDescription>Unable to find job J009999</ErrorDescription></Response>"
    script = Script(xml(200, body))
    client, _, _ = make(script)
    with pytest.raises(XPMNotFound, match="Unable to find job J009999"):
        client.job("J009999")
    assert len(script.requests) == 1


def test_500_with_error_body_is_final_not_retried():
    body = b"<Response><Status>ERROR</Status><ErrorDescription>Minutes must be a number</ErrorDescription></Response>"
    script = Script(xml(500, body))
    client, _, _ = make(script)
    with pytest.raises(XPMResponseError, match="Minutes must be a number"):
        client.add_time(**TIME_FIELDS)
    assert len(script.requests) == 1


def test_5xx_on_read_retries_with_backoff():
    clock = ManualClock()
    script = Script(xml(503, b"busy"), xml(502, b""), xml(200, OK_STAFF))
    client, _, _ = make(script, clock=clock)
    client.staff()
    assert len(script.requests) == 3
    assert len(clock.sleeps) == 2 and all(s > 0 for s in clock.sleeps)


def test_5xx_on_read_gives_up_after_max_attempts():
    script = Script(*[xml(503, b"")] * 3)
    client, _, _ = make(script, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(Exception, match="kept failing"):
        client.staff()
    assert len(script.requests) == 3


def test_5xx_on_create_is_unclear_and_not_resent():
    script = Script(xml(503, b""))
    client, _, _ = make(script)
    with pytest.raises(XPMUnclearOutcome):
        client.add_time(**TIME_FIELDS)
    assert len(script.requests) == 1


def test_read_timeout_on_create_is_unclear():
    script = Script(httpx.ReadTimeout("slow"))
    client, _, _ = make(script)
    with pytest.raises(XPMUnclearOutcome):
        client.add_time(**TIME_FIELDS)
    assert len(script.requests) == 1


def test_connect_error_on_create_retries_because_nothing_was_sent():
    script = Script(httpx.ConnectError("refused"), xml(200, OK_TIME))
    client, _, _ = make(script)
    result = client.add_time(**TIME_FIELDS)
    assert result.new_id == "f30c8127-b101-455c-882e-92d856bc5576"
    assert len(script.requests) == 2


def test_connect_errors_exhaust_into_unavailable():
    script = Script(*[httpx.ConnectError("refused")] * 2)
    client, _, _ = make(script, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(XPMUnavailable):
        client.staff()


def test_reset_on_put_is_retried_full_body_puts_are_idempotent():
    script = Script(httpx.RemoteProtocolError("reset"), xml(200, b"<Response><Status>OK</Status></Response>"))
    client, _, _ = make(script)
    client.update_job(ID="J1", Budget="10")
    assert len(script.requests) == 2
    assert script.requests[0].content == script.requests[1].content


def test_401_refreshes_once_and_retries_with_the_new_token():
    script = Script(xml(401, b""), xml(200, OK_STAFF))
    client, tokens, _ = make(script)
    client.staff()
    assert tokens.refreshes == 1
    assert [r.headers["Authorization"] for r in script.requests] == ["Bearer access-1", "Bearer access-2"]


def test_second_401_after_refresh_is_an_auth_error():
    script = Script(xml(401, b""), xml(401, b""))
    client, tokens, _ = make(script)
    with pytest.raises(XPMAuthError, match="xpm-pipeline connect"):
        client.staff()
    assert tokens.refreshes == 1


def test_truncated_read_is_retried_then_succeeds():
    script = Script(xml(200, OK_STAFF[:60]), xml(200, OK_STAFF))
    client, _, _ = make(script)
    assert len(client.staff()["staff"]) == 1


def test_errors_never_carry_credentials():
    script = Script(xml(400, b"echo: Authorization: Bearer access-1 refresh_token=abc"))
    client, _, _ = make(script)
    with pytest.raises(XPMResponseError) as caught:
        client.staff()
    assert "access-1" not in str(caught.value) and "abc" not in str(caught.value)
    assert "access-1" not in repr(client)


def test_write_body_is_bare_element_in_documented_order():
    script = Script(xml(200, OK_TIME))
    client, _, _ = make(script)
    client.add_time(Note="n", Minutes=60, Date="20260814", StaffUUID="s", TaskUUID="t", Job="J1")
    request = script.requests[0]
    assert request.method == "POST" and request.url.path.endswith("time.api/add")
    assert request.headers["Content-Type"] == "application/xml"
    assert request.content == (
        b"<Timesheet><Job>J1</Job><TaskUUID>t</TaskUUID><StaffUUID>s</StaffUUID><Date>20260814</Date>"
        b"<Minutes>60</Minutes><Note>n</Note></Timesheet>"
    )


def test_bad_write_is_refused_before_any_call():
    script = Script()
    client, _, _ = make(script)
    with pytest.raises(ValueError, match="Minutes or Start\\+End"):
        client.add_time(Job="J1", TaskUUID="t", StaffUUID="s", Date="2026-08-14")
    with pytest.raises(ValueError, match="not a date"):
        client.add_time(Job="J1", TaskUUID="t", StaffUUID="s", Date="23/11/2026", Minutes=5)
    with pytest.raises(ValueError, match="unknown field"):
        client.update_job(ID="J1", Colour="red")
    assert script.requests == []


def test_503_with_an_error_body_is_still_transient():
    body = b"<Response><Status>ERROR</Status><ErrorDescription>Service unavailable</ErrorDescription></Response>"
    script = Script(xml(503, body), xml(200, OK_STAFF))
    client, _, _ = make(script)
    client.staff()
    assert len(script.requests) == 2
