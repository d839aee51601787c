"""Rate limits: minute, day (rolling and fixed), app-wide, concurrency; headers and Retry-After."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import httpx

from xpm_pipeline.sandbox import SandboxServer
from xpm_pipeline_tests.sandbox.conftest import SSL_CONTEXT, Api, http, make_config

HEADERS = ("x-daylimit-remaining", "x-minlimit-remaining", "x-appminlimit-remaining")


def remaining(response: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(response.headers[h]) for h in HEADERS)


def test_minute_limit_sliding_window_and_retry_after(clock):
    with SandboxServer(make_config(clock=clock, minute_limit=5)) as sb:
        api = Api(sb)
        seen = []
        for i in range(5):
            answer = api.get("staff.api/list")
            assert answer.status_code == 200
            seen.append(remaining(answer)[1])
            clock.advance(10)
        assert seen == [4, 3, 2, 1, 0]
        # now = t0 + 50 s: the oldest call (t0) leaves the window at t0 + 60 s.
        refused = api.get("staff.api/list")
        assert refused.status_code == 429
        assert refused.headers["x-rate-limit-problem"] == "minute"
        assert refused.headers["retry-after"] == "10"
        assert remaining(refused)[1] == 0
        # A 429 is not counted: waiting exactly Retry-After is enough (the client "sleeps" on the shared clock).
        clock.sleep(int(refused.headers["retry-after"]))
        assert clock.sleeps == [10]
        admitted = api.get("staff.api/list")
        assert admitted.status_code == 200 and remaining(admitted)[1] == 0
        log = [e for e in sb.request_log if e["path"].endswith("staff.api/list")]
        assert [e["status"] for e in log] == [200] * 5 + [429, 200]
        assert [e["counted"] for e in log] == [True] * 5 + [False, True]


def test_every_xpm_answer_carries_the_headers_and_errors_count(clock):
    with SandboxServer(make_config(clock=clock, daily_limit=50)) as sb:
        api = Api(sb)
        not_found = api.get("staff.api/get/00000000-0000-4000-8000-000000000000")
        assert api.error(not_found, 200).startswith("Unable to find staff")
        bad_range = api.get("time.api/list", **{"from": "20260101"})
        api.error(bad_range, 400)
        unknown = api.get("nothing.api/list")
        api.error(unknown, 404)
        assert [remaining(r)[0] for r in (not_found, bad_range, unknown)] == [49, 48, 47]
        unauthenticated = http.get(sb.api_url + "staff.api/list", headers={"Xero-Tenant-Id": sb.tenant_ids[0]})
        assert unauthenticated.status_code == 401 and remaining(unauthenticated)[0] == 47


def test_rolling_day_window(clock):
    with SandboxServer(make_config(clock=clock, daily_limit=3, day_window="rolling")) as sb:
        api = Api(sb)
        for _ in range(3):
            assert api.get("staff.api/list").status_code == 200
            clock.advance(500)
        refused = api.get("staff.api/list")
        assert refused.status_code == 429 and refused.headers["x-rate-limit-problem"] == "day"
        assert int(refused.headers["retry-after"]) == 86400 - 1500
        assert remaining(refused)[0] == 0
        clock.advance(86400 - 1500 - 1)
        api.renew()
        assert api.get("staff.api/list").status_code == 429
        clock.advance(1)
        answer = api.get("staff.api/list")
        assert answer.status_code == 200 and remaining(answer)[0] == 0
        clock.advance(500)
        assert remaining(api.get("staff.api/list"))[0] == 0


def test_fixed_day_window_resets_at_utc_midnight(clock):
    with SandboxServer(make_config(clock=clock, daily_limit=3, day_window="fixed")) as sb:
        api = Api(sb)
        for _ in range(3):
            assert api.get("staff.api/list").status_code == 200
        refused = api.get("staff.api/list")
        assert refused.status_code == 429 and refused.headers["x-rate-limit-problem"] == "day"
        assert int(refused.headers["retry-after"]) == 15 * 3600  # 09:00 -> midnight UTC
        clock.set(datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc))
        api.renew()
        answer = api.get("staff.api/list")
        assert answer.status_code == 200 and remaining(answer)[0] == 2


def test_rolling_window_does_not_reset_at_midnight(clock):
    with SandboxServer(make_config(clock=clock, daily_limit=2, day_window="rolling")) as sb:
        api = Api(sb)
        clock.set(datetime(2026, 11, 23, 23, 0, tzinfo=timezone.utc))
        api.renew()
        api.get("staff.api/list")
        api.get("staff.api/list")
        clock.set(datetime(2026, 11, 24, 0, 30, tzinfo=timezone.utc))
        api.renew()
        refused = api.get("staff.api/list")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 22 * 3600 + 1800


def test_app_minute_limit_spans_tenants(clock):
    with SandboxServer(make_config(clock=clock, app_minute_limit=4)) as sb:
        first, second = Api(sb, sb.tenant_ids[0]), Api(sb, sb.tenant_ids[1])
        for api in (first, second, first, second):
            assert api.get("staff.api/list").status_code == 200
            clock.advance(5)
        refused = second.get("staff.api/list")
        assert refused.status_code == 429 and refused.headers["x-rate-limit-problem"] == "appminute"
        assert refused.headers["retry-after"] == "40"
        assert remaining(refused)[2] == 0
        # Per-tenant counters are separate.
        assert remaining(refused)[1] == 100_000 - 2


def test_concurrent_limit_with_latency_fault(clock):
    with SandboxServer(make_config(clock=clock, concurrent_limit=2)) as sb:
        api = Api(sb)
        sb.add_fault(path="staff.api/list", kind="latency", seconds=1.0, count=2)
        results = []

        def slow_call() -> None:
            with httpx.Client(base_url=sb.api_url, verify=SSL_CONTEXT, headers=api.http.headers, timeout=10) as http:
                results.append(http.get("staff.api/list").status_code)

        threads = [threading.Thread(target=slow_call) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while sb.limiter.snapshot().get(api.tenant_id, {}).get("in_flight") != 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = api.get("task.api/list")
        assert refused.status_code == 429
        assert refused.headers["x-rate-limit-problem"] == "concurrent" and refused.headers["retry-after"] == "1"
        for thread in threads:
            thread.join()
        assert results == [200, 200]
        assert api.get("task.api/list").status_code == 200
        assert [e["fault"] for e in sb.request_log if e["path"].endswith("staff.api/list")] == ["latency", "latency"]


def test_longest_wait_is_reported_when_several_limits_are_hit(clock):
    with SandboxServer(make_config(clock=clock, minute_limit=2, daily_limit=2)) as sb:
        api = Api(sb)
        api.get("staff.api/list")
        api.get("staff.api/list")
        refused = api.get("staff.api/list")
        assert refused.headers["x-rate-limit-problem"] == "day"
        assert int(refused.headers["retry-after"]) == 86400
