"""Hypothesis drives the ledger through admits, answers, 429s, crashes and clock jumps against the
sandbox's own limiter (XPM as we model it), checking after every step that:

- the ledger's own counts never exceed a limit: any 60 s, any 24 h (per kind of call), in flight;
- no call is admitted while a 429 block is in force;
- XPM never refuses a call for the minute or concurrency limits, and never for any reason when the
  ledger knew all XPM knew (nothing in flight, the latest call answered) — even when XPM's daily cap
  is lower than configured;
- when the ledger holds a call back for a reason of its own, ``available_at`` is exactly the moment
  that reason ends; and after every block and window has passed, a call is admitted;
- every admitted call is in the ledger exactly once, with its outcome.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import delete, select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.quota import QuotaLedger, QuotaLimits, background_reads
from xpm_pipeline.quota import tables as T
from xpm_pipeline.sandbox.config import SandboxConfig
from xpm_pipeline.sandbox.limits import Limiter
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.xpm.client import CallInfo, CallResult

from .conftest import START

TENANTS = ("a", "b")
LIMITS = QuotaLimits(daily_limit=10, daily_reserve=2, minute_limit=4, concurrent_limit=2, low_budget_share=0.2)
LEASE = 300.0
POLL = 0.5
LOCAL_REASONS = {"blocked", "app_blocked", "minute", "day", "in_flight"}
MINUTE, DAY = timedelta(seconds=60), timedelta(days=1)


def _result_from(decision_headers: dict, status: int, retry_after=None, problem=None) -> CallResult:
    return CallResult(
        status_code=status,
        day_remaining=int(decision_headers["X-DayLimit-Remaining"]),
        minute_remaining=int(decision_headers["X-MinLimit-Remaining"]),
        app_minute_remaining=int(decision_headers["X-AppMinLimit-Remaining"]),
        retry_after=retry_after,
        problem=problem,
    )


def machine_for(engine):
    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with write_transaction(engine) as conn:
                for table in T.QUOTA_TABLES:
                    conn.execute(delete(table))
            self.clock = ManualClock(START)
            self.ledger = QuotaLedger(
                engine, clock=self.clock, limits=LIMITS, margin=0.0, lease=LEASE, poll_interval=POLL,
                max_wait=0, prune_every=None,
            )
            self.server: Limiter | None = None
            self.rows: dict[int, dict] = {}  # call_id -> what the model knows of the call
            self.pending: list[dict] = []  # admitted, answer not yet delivered
            self.blocked = {tenant: START for tenant in (*TENANTS, "*")}
            self.refusals = 0

        @rule(server_daily=st.sampled_from([10, 6, 3, 1]))
        @precondition(lambda self: self.server is None)
        def start_server(self, server_daily):
            """XPM's real daily cap may be lower than the configured 10 (its headers must tell us)."""
            config = SandboxConfig(daily_limit=server_daily, minute_limit=LIMITS.minute_limit,
                                   concurrent_limit=LIMITS.concurrent_limit, app_minute_limit=10_000)
            self.server = Limiter(config, self.clock)

        # --- the model of the ledger's own rules -----------------------------------------------

        def _local_hold(self, tenant: str, direction: str, background: bool):
            now = self.clock.now()
            held = []
            for key, reason in ((tenant, "blocked"), ("*", "app_blocked")):
                if self.blocked[key] > now:
                    held.append((self.blocked[key], reason))
            mine = sorted(r["at"] for r in self.rows.values() if r["tenant"] == tenant)
            # a call leaves the minute a minute after its answer (unanswered: after its lease)
            leaving = sorted(
                (r["finished_at"] if r["finished"] else r["at"] + timedelta(seconds=LEASE)) + MINUTE
                for r in self.rows.values() if r["tenant"] == tenant
            )
            minute = [at for at in leaving if at > now]
            if len(minute) >= LIMITS.minute_limit:
                held.append((minute[len(minute) - LIMITS.minute_limit], "minute"))
            day = [at for at in mine if at > now - DAY]
            allowance = LIMITS.day_allowance(direction, background)
            if len(day) >= allowance:
                held.append((day[len(day) - allowance] + DAY, "day"))
            flying = sorted(
                r["at"] for r in self.rows.values()
                if r["tenant"] == tenant and not r["finished"] and r["at"] > now - timedelta(seconds=LEASE)
            )
            if len(flying) >= LIMITS.concurrent_limit:
                held.append((min(now + timedelta(seconds=POLL), flying[0] + timedelta(seconds=LEASE)), "in_flight"))
            return held

        # --- rules ----------------------------------------------------------------------------

        @rule(tenant=st.sampled_from(TENANTS), kind=st.sampled_from(["read", "write", "background"]),
              fault=st.sampled_from([None, None, None, 1, 45]))
        @precondition(lambda self: self.server is not None)
        def admit(self, tenant, kind, fault):
            direction = "write" if kind == "write" else "read"
            background = kind == "background"
            call = CallInfo(tenant, "POST" if direction == "write" else "GET", "x.api/y", direction, "job")
            now = self.clock.now()
            expected = self._local_hold(tenant, direction, background)
            with background_reads() if background else nullcontext():
                admission = self.ledger.try_admit(call)
            if not admission.admitted:
                assert admission.available_at > now
                if expected:
                    latest = max(at for at, _ in expected)
                    if admission.reason in LOCAL_REASONS:
                        assert (admission.available_at, admission.reason) in expected
                        assert admission.available_at == latest
                    else:
                        assert admission.available_at >= latest
                else:
                    assert admission.reason in ("server_minute", "server_day"), admission
                return
            assert expected == [], (expected, admission)
            assert admission.at == now and admission.call_id not in self.rows
            # The ledger knows all XPM knows when nothing is in flight and the latest call was answered
            # (its headers then count every earlier call, crashed or unanswered ones included).
            mine = [call_id for call_id, r in self.rows.items() if r["tenant"] == tenant]
            knew_everything = not any(p["tenant"] == tenant for p in self.pending) and (
                not mine or self.rows[max(mine)]["outcome"] in ("ok", "rate_limited")
            )
            if fault is not None:  # a 429 injected on arrival: XPM did not count it
                response = _result_from(self.server.headers(tenant), 429, float(fault), "minute")
                counted = False
            else:
                decision = self.server.admit(tenant)
                counted = decision.admitted
                if decision.admitted:
                    response = _result_from(decision.headers, 200)
                else:
                    self.refusals += 1
                    assert decision.problem == "day", decision  # minute and concurrency: never
                    assert not knew_everything, "XPM refused a call the ledger had full information for"
                    response = _result_from(decision.headers, 429, float(decision.retry_after), decision.problem)
            self.rows[admission.call_id] = {"tenant": tenant, "at": now, "direction": direction, "finished": False,
                                            "outcome": None}
            self.pending.append({"tenant": tenant, "admission": admission, "response": response, "counted": counted})

        @rule(tenant=st.sampled_from(TENANTS), kind=st.sampled_from(["read", "write", "background"]),
              calls=st.integers(1, 6))
        @precondition(lambda self: self.server is not None)
        def call_in_turn(self, tenant, kind, calls):
            """Calls one after another, each answered before the next (a sync paging through a list)."""
            for _ in range(calls):
                before = len(self.pending)
                self.admit(tenant, kind, None)
                if len(self.pending) == before:
                    return
                self._deliver(len(self.pending) - 1, answered=True)

        def _deliver(self, index: int, answered: bool) -> None:
            item = self.pending.pop(index)
            if item["counted"]:
                self.server.release(item["tenant"])
            result = item["response"] if answered else CallResult(status_code=None, sent=True)
            self.ledger.finish(item["admission"], result)
            row = self.rows[item["admission"].call_id]
            row["finished"] = True
            row["finished_at"] = self.clock.now()
            row["outcome"] = ("rate_limited" if result.status_code == 429 else "ok") if answered else "no_answer"
            if answered and result.status_code == 429:
                key = "*" if result.problem == "appminute" else item["tenant"]
                self.blocked[key] = max(self.blocked[key], self.clock.now() + timedelta(seconds=result.retry_after))

        @rule(data=st.data(), answered=st.sampled_from([True, True, True, False]))
        @precondition(lambda self: self.pending)
        def answer(self, data, answered):
            self._deliver(data.draw(st.integers(0, len(self.pending) - 1)), answered)

        @rule(data=st.data())
        @precondition(lambda self: self.pending)
        def crash(self, data):
            """The process dies mid-call: XPM finishes it, the ledger never hears (the lease ends it)."""
            item = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
            if item["counted"]:
                self.server.release(item["tenant"])

        @rule(seconds=st.sampled_from([0.25, 1, 1, 7, 15, 30, 59, 60, 61, 299, 3600, 43200, 86400]))
        def advance(self, seconds):
            # A call outliving the lease has timed out in the client by then: deliver "no answer" first.
            horizon = self.clock.now() + timedelta(seconds=seconds) - timedelta(seconds=LEASE)
            for index in reversed(range(len(self.pending))):
                if self.pending[index]["admission"].at <= horizon:
                    self._deliver(index, answered=False)
            self.clock.advance(seconds)

        @rule(tenant=st.sampled_from(TENANTS))
        @precondition(lambda self: self.server is not None)
        def after_everything_passes_a_call_goes(self, tenant):
            while self.pending:
                self._deliver(0, answered=True)
            self.clock.advance(2 * 86400)  # past every window, block (Retry-After <= 1 day) and lease
            admission = self.ledger.try_admit(CallInfo(tenant, "POST", "x.api/y", "write", None))
            assert admission.admitted, admission
            decision = self.server.admit(tenant)
            assert decision.admitted
            self.rows[admission.call_id] = {"tenant": tenant, "at": admission.at, "direction": "write",
                                            "finished": False, "outcome": None}
            self.pending.append({"tenant": tenant, "admission": admission,
                                 "response": _result_from(decision.headers, 200), "counted": True})

        # --- invariants -----------------------------------------------------------------------

        @invariant()
        def ledger_counts_stay_within_limits(self):
            for tenant in TENANTS:
                times = sorted(r["at"] for r in self.rows.values() if r["tenant"] == tenant)
                for i, at in enumerate(times):
                    in_minute = sum(1 for other in times[: i + 1] if other > at - MINUTE)
                    assert in_minute <= LIMITS.minute_limit
                    in_day = sum(1 for other in times[: i + 1] if other > at - DAY)
                    assert in_day <= LIMITS.daily_limit
                assert sum(1 for p in self.pending if p["tenant"] == tenant) <= LIMITS.concurrent_limit

        def teardown(self):
            with engine.connect() as conn:
                stored = {r.call_id: r for r in conn.execute(select(T.ledger))}
            assert set(stored) == set(self.rows)  # each admitted call exactly once, nothing else
            for call_id, row in self.rows.items():
                assert stored[call_id].admitted_at == row["at"]
                assert stored[call_id].outcome == row["outcome"]

    return LedgerMachine


def test_ledger_state_machine(engine):
    examples = 25 if engine.dialect.name == "sqlite" else 10
    run_state_machine_as_test(
        machine_for(engine),
        settings=settings(
            max_examples=examples, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
