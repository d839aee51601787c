"""Hypothesis drives the export queue through any interleaving of enqueue, claim, send outcome (ok,
unclear whether applied or not, refused, 429), worker crash (before or after its call reached XPM),
settling in-doubt items, and clock jumps — against a model of XPM — and checks after every step:

- no item is held by two live workers; a claim never returns an item another worker's lease covers;
- at most one item per entity is on its way (sending or in doubt), and it is the entity's oldest open
  item: two edits of one thing never race;
- nothing disappears: the queue holds exactly what was added (updates merged into a waiting item);
- a create reaches XPM at most once, whatever crashed when;
- at the end, after leases pass and one healthy worker drains, every item is done or dead and every
  create that is done is in XPM exactly once, with its XPM id.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import delete, insert, select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.export import enqueue
from xpm_pipeline.export import queue as Q
from xpm_pipeline.export import tables as T
from xpm_pipeline.warehouse.control import oauth_grants, tenants
from xpm_pipeline.warehouse.db import make_engine, write_transaction
from xpm_pipeline.warehouse.migrate import migrate

from .conftest import START

TENANT = "tenant-sm"
LEASE = timedelta(seconds=60)
WORKERS = ("w1", "w2")
CREATE_KEYS = ("c0", "c1", "c2")
JOB_KEYS = ("J1",)


def _change(kind: str, key: str, value: int) -> dict:
    if kind == "timesheet":
        return {"kind": "timesheet", "op": "create", "key": key,
                "fields": {"Job": "J1", "TaskUUID": "t", "StaffUUID": "s", "Date": "2026-11-23", "Minutes": value}}
    return {"kind": "job", "op": "update", "key": key, "fields": {"Budget": f"{value}.00"}}


def machine_for(engine):
    class QueueMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with write_transaction(engine) as conn:
                conn.execute(delete(T.log))
                conn.execute(delete(T.queue))
            self.clock = ManualClock(START)
            self.claims: dict[str, list[Q.Item]] = {w: [] for w in WORKERS}  # what each live worker holds
            self.xpm_creates: Counter[str] = Counter()  # the model of XPM: creates applied, by key
            self.xpm_jobs: dict[str, dict] = {}
            self.sent_payload: dict[int, tuple[str, dict]] = {}  # item -> what reached XPM (unclear sends)
            self.items = 0

        # --- rules ----------------------------------------------------------------------------------

        @rule(kind=st.sampled_from(["timesheet", "job", "job", "job"]), index=st.integers(0, 2), value=st.integers(1, 99))
        def add(self, kind, index, value):
            key = CREATE_KEYS[index] if kind == "timesheet" else JOB_KEYS[index % len(JOB_KEYS)]
            result = enqueue(engine, TENANT, [_change(kind, key, value)], clock=self.clock)
            self.items += result.added

        @rule(worker=st.sampled_from(WORKERS))
        def claim(self, worker):
            item = Q.claim_next(engine, TENANT, worker, self.clock.now(), LEASE)
            if item is not None:
                for other, held in self.claims.items():
                    live = [i for i in held if i.item_id == item.item_id]
                    assert not live or other == worker, f"item {item.item_id} claimed by {other} and {worker}"
                self.claims[worker].append(item)

        def _held(self, worker, status):
            return [i for i in self.claims[worker] if i.status == status]

        @precondition(lambda self: any(self._held(w, "pending") for w in WORKERS))
        @rule(data=st.data(), outcome=st.sampled_from(
            ["ok", "unclear_applied", "unclear_not_applied", "refused", "rate_limited", "crash_after_send",
             "crash_before_send"]))
        def send(self, data, outcome):
            worker = data.draw(st.sampled_from([w for w in WORKERS if self._held(w, "pending")]))
            item = data.draw(st.sampled_from(self._held(worker, "pending")))
            self.claims[worker].remove(item)
            now = self.clock.now()
            try:
                with write_transaction(engine) as conn:
                    item = Q.mark_sending(conn, item, call_id=None, now=now, lease=LEASE)
            except Q.ClaimLost:
                return  # the lease ran out and someone else took it: correct, nothing sent
            if outcome in ("ok", "unclear_applied", "crash_after_send"):
                self._apply(item)
            if outcome == "ok":
                Q.mark_done(engine, item, now, remote_id=f"xpm-{item.entity_key}", response="OK")
            elif outcome in ("unclear_applied", "unclear_not_applied"):
                Q.mark_in_doubt(engine, item, now, "no answer")
            elif outcome == "refused":
                Q.mark_dead(engine, item, now, "XPM said no", status_code=400)
            elif outcome == "rate_limited":
                Q.requeue(engine, item, now, "429", not_an_attempt=True)
            # crash_*: the worker is gone; the item stays `sending` until its lease ends

        def _apply(self, item: Q.Item) -> None:
            if item.op == "create":
                self.xpm_creates[item.entity_key] += 1
            else:
                self.xpm_jobs.setdefault(item.entity_key, {}).update(item.payload)
            self.sent_payload[item.item_id] = (item.entity_key, dict(item.payload))

        @precondition(lambda self: any(self._held(w, "in_doubt") for w in WORKERS))
        @rule(data=st.data())
        def settle(self, data):
            worker = data.draw(st.sampled_from([w for w in WORKERS if self._held(w, "in_doubt")]))
            item = data.draw(st.sampled_from(self._held(worker, "in_doubt")))
            self.claims[worker].remove(item)
            self._settle(item)

        def _settle(self, item: Q.Item) -> None:
            now = self.clock.now()
            if item.op == "create":
                applied = self.xpm_creates[item.entity_key] > 0
            else:
                current = self.xpm_jobs.get(item.entity_key, {})
                applied = all(current.get(k) == v for k, v in item.payload.items())
            if applied:
                Q.mark_done(engine, item, now, remote_id=f"xpm-{item.entity_key}", response="read back",
                            event="reconciled")
            else:
                Q.requeue(engine, item, now, "read back: not applied")

        @rule(worker=st.sampled_from(WORKERS))
        def crash(self, worker):
            self.claims[worker] = []  # its claims live on in the database until their leases end

        @rule(seconds=st.sampled_from([1, 30, 61, 600]))
        def advance(self, seconds):
            self.clock.advance(seconds)
            now = self.clock.now()
            for worker in WORKERS:  # a worker's claims end with its lease
                self.claims[worker] = [i for i in self.claims[worker] if self._lease_of(i) > now]
            Q.recover_expired(engine, TENANT, now)

        def _lease_of(self, item: Q.Item):
            with engine.connect() as conn:
                row = conn.execute(select(T.queue.c.lease_until, T.queue.c.claimed_by)
                                   .where(T.queue.c.item_id == item.item_id)).one()
            return row.lease_until if row.claimed_by == item.claimed_by and row.lease_until else START

        # --- invariants -------------------------------------------------------------------------------

        def _rows(self):
            with engine.connect() as conn:
                return conn.execute(select(T.queue).order_by(T.queue.c.item_id)).all()

        @invariant()
        def nothing_lost(self):
            assert len(self._rows()) == self.items

        @invariant()
        def creates_reach_xpm_at_most_once(self):
            assert all(count <= 1 for count in self.xpm_creates.values()), self.xpm_creates

        @invariant()
        def one_item_per_entity_on_its_way_and_it_is_the_oldest(self):
            rows = self._rows()
            for row in rows:
                if row.status not in (T.SENDING, T.IN_DOUBT):
                    continue
                older_open = [r for r in rows if (r.kind, r.entity_key) == (row.kind, row.entity_key)
                              and r.item_id < row.item_id and r.status in T.OPEN_STATUSES]
                assert not older_open, (row.item_id, [r.item_id for r in older_open])

        def teardown(self):
            # One healthy worker, after every lease ends, settles and sends everything.
            self.clock.advance(LEASE.total_seconds() + 1)
            Q.recover_expired(engine, TENANT, self.clock.now())
            for _ in range(10 * max(1, self.items)):
                item = Q.claim_next(engine, TENANT, "final", self.clock.now(), LEASE)
                if item is None:
                    break
                if item.status == T.IN_DOUBT:
                    self._settle(item)
                    continue
                with write_transaction(engine) as conn:
                    item = Q.mark_sending(conn, item, call_id=None, now=self.clock.now(), lease=LEASE)
                self._apply(item)
                Q.mark_done(engine, item, self.clock.now(), remote_id=f"xpm-{item.entity_key}", response="OK")
            rows = self._rows()
            assert {r.status for r in rows} <= {T.DONE, T.DEAD}, Counter(r.status for r in rows)
            for row in rows:
                if row.op == "create" and row.status == T.DONE:
                    assert self.xpm_creates[row.entity_key] == 1 and row.remote_id == f"xpm-{row.entity_key}"
            latest: dict[str, dict] = {}
            for row in rows:  # the job's final state is the merge of its done updates, in order
                if row.kind == "job" and row.status == T.DONE:
                    latest.setdefault(row.entity_key, {}).update(json.loads(row.payload))
            for key, values in latest.items():
                assert all(self.xpm_jobs[key].get(k) == v for k, v in values.items())

    return QueueMachine


@pytest.fixture
def engine(warehouse_url):
    engine = make_engine(warehouse_url)
    migrate(engine)
    with write_transaction(engine) as conn:
        conn.execute(insert(oauth_grants).values(
            grant_id="g", client_id="c", scopes="practicemanager", refresh_token_enc=None, access_token_enc=None,
            refresh_issued_at=START, status="active", created_at=START, updated_at=START))
        conn.execute(insert(tenants).values(
            tenant_id=TENANT, tenant_name="State machine practice", tenant_type="PRACTICEMANAGER", connection_id="x",
            grant_id="g", slot=0, status="active", connected_at=START))
    yield engine
    engine.dispose()


def _run(engine, examples: int) -> None:
    run_state_machine_as_test(
        machine_for(engine),
        settings=settings(max_examples=examples, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]),
    )


def test_queue_state_machine(engine):
    _run(engine, 60)


@pytest.mark.slow
def test_queue_state_machine_long(engine):
    _run(engine, 400)
