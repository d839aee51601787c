"""The export in Dagster: one drain run per tenant with work, the drain job, the queue observed."""

from __future__ import annotations

import json

import dagster as dg
from sqlalchemy import func, select

from xpm_pipeline.defs.export import QUEUE_ASSET, drain_run_config, xpm_export_sensor
from xpm_pipeline.defs.instance import EXPORT_TAG
from xpm_pipeline.export import enqueue
from xpm_pipeline.export import tables as T
from xpm_pipeline.quota import set_tenant_limits
from xpm_pipeline_tests.export.support import job_updates, timesheet_creates


def tick(instance, xpm, cursor=None):
    return xpm_export_sensor(dg.build_sensor_context(instance=instance, resources={"xpm": xpm}, cursor=cursor))


def _status_counts(runtime, tenant):
    with runtime.engine.connect() as conn:
        return dict(conn.execute(select(T.queue.c.status, func.count()).where(T.queue.c.tenant_id == tenant)
                                 .group_by(T.queue.c.status)).all())


def test_one_drain_run_per_tenant_with_work_then_the_queue_drains(instance, defs, xpm, tenants, runtime, sandbox,
                                                                   clock):
    a, b, idle = tenants
    enqueue(runtime.engine, a, timesheet_creates(sandbox, a, 30, clock.now().date()), clock=clock)
    enqueue(runtime.engine, b, job_updates(sandbox, b, 3), clock=clock)

    result = tick(instance, xpm)
    requests = {r.tags[EXPORT_TAG]: r for r in result.run_requests}
    assert set(requests) == {a, b}  # one run per tenant, not per item; the idle tenant gets none
    assert requests[a].run_config == drain_run_config(a) and requests[a].tags["xpm/waiting"] == "30"
    (observation,) = result.asset_events
    assert observation.asset_key == QUEUE_ASSET
    assert observation.metadata["pending"].value == 33
    assert observation.metadata["waiting: timesheets"].value == 30
    assert observation.metadata["waiting: job updates"].value == 3
    assert json.loads(result.cursor) == {a: 1, b: 1}

    # While a drain of tenant a is waiting to start, the next tick does not start another one for it.
    job = defs.resolve_job_def("xpm_export_drain")
    instance.create_run_for_job(job, run_config=drain_run_config(a), tags=requests[a].tags,
                                status=dg.DagsterRunStatus.NOT_STARTED)
    again = tick(instance, xpm, cursor=result.cursor)
    assert {r.tags[EXPORT_TAG] for r in again.run_requests} == {b}
    assert {r.run_key for r in again.run_requests}.isdisjoint({r.run_key for r in result.run_requests})

    run = job.execute_in_process(run_config=drain_run_config(a), instance=instance, tags=requests[a].tags)
    assert run.success
    assert _status_counts(runtime, a) == {"done": 30}
    observed = [e for e in run.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    (event,) = observed
    metadata = event.event_specific_data.asset_observation.metadata
    assert metadata["done"].value == 30 and metadata["open"].value == 0
    assert metadata["drain"].value["sent"] == 30 and metadata["drain"].value["stopped"] == "queue empty"


def test_a_tenant_out_of_export_quota_is_not_started_every_tick(instance, xpm, tenants, runtime, sandbox, clock):
    a = tenants[0]
    set_tenant_limits(runtime.engine, a, daily_limit=25, daily_reserve=20, now=clock.now())
    enqueue(runtime.engine, a, timesheet_creates(sandbox, a, 10, clock.now().date()), clock=clock)
    with runtime.client(a) as client:
        from xpm_pipeline.export.worker import drain

        report = drain(runtime.engine, client, runtime.ledger)
    assert report.done == 5 and report.stopped == "quota used up"
    result = tick(instance, xpm)
    assert not result.run_requests  # 5 wait for tomorrow's quota: no run until then
    clock.set(report.resume_at)
    assert {r.tags[EXPORT_TAG] for r in tick(instance, xpm).run_requests} == {a}


def test_a_failed_drain_fails_its_run_with_the_reason(instance, defs, xpm, tenants, runtime, sandbox, clock):
    a = tenants[0]
    enqueue(runtime.engine, a, timesheet_creates(sandbox, a, 2, clock.now().date()), clock=clock)
    runtime.tokens.disconnect(a)
    job = defs.resolve_job_def("xpm_export_drain")
    run = job.execute_in_process(run_config=drain_run_config(a), instance=instance, raise_on_error=False)
    assert not run.success
    assert _status_counts(runtime, a) == {"pending": 2}  # nothing lost
