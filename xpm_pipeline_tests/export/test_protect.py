"""Inbound protection: a pending job or client edit wins in the warehouse until XPM has it."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from xpm_pipeline.export import enqueue
from xpm_pipeline.export.worker import drain
from xpm_pipeline.sync.context import INITIAL, NIGHTLY, SyncContext
from xpm_pipeline.sync.run import run_sync
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline_tests.export.support import current_jobs
from xpm_pipeline_tests.support import admin


def _sync(runtime, client, tenant, clock, mode):
    report = run_sync(SyncContext(runtime.engine, client, tenant, mode, clock=clock))
    assert report.ok, [(o.entity, o.error) for o in report.outcomes]
    return report


def _job(engine, tenant, number):
    jobs = table_for("job")
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.tenant_id == tenant, jobs.c.job_number == number)).one()


def _client_row(engine, tenant, uuid):
    clients = table_for("client")
    with engine.connect() as conn:
        return conn.execute(select(clients).where(clients.c.tenant_id == tenant, clients.c.uuid == uuid)).one()


def test_pending_job_budget_survives_a_nightly_sync_then_agrees_after_export(runtime, sandbox, tenant, client, clock):
    _sync(runtime, client, tenant, clock, INITIAL)
    job = current_jobs(sandbox, tenant)[0]
    number, original_name = job.job_number, job.name
    enqueue(runtime.engine, tenant, [{"kind": "job", "op": "update", "key": number, "fields": {"Budget": "2500.00"}}],
            clock=clock)
    assert _job(runtime.engine, tenant, number).budget == Decimal("2500.00")  # shown at once

    # Meanwhile a person changes the same job in XPM: a different budget, and its name.
    admin(sandbox, "PATCH", f"tenants/{tenant}/jobs/{number}", {"budget": "999.00", "name": "Renamed in XPM"})
    # ...and adds a new job, which must still arrive.
    new_job = admin(sandbox, "POST", f"tenants/{tenant}/jobs",
                    {"name": "Fresh job", "client_uuid": job.client.uuid, "state": "INPROGRESS"})
    clock.advance(3600)
    _sync(runtime, client, tenant, clock, NIGHTLY)
    row = _job(runtime.engine, tenant, number)
    assert row.budget == Decimal("2500.00")  # the pending edit survived
    assert row.name == "Renamed in XPM" != original_name  # other fields of the job still sync
    assert _job(runtime.engine, tenant, new_job["job_number"]).name == "Fresh job"

    report = drain(runtime.engine, client, runtime.ledger)
    assert report.ok and report.done == 1
    assert sandbox.tenant(tenant).jobs[number].budget == Decimal("2500.00")
    clock.advance(3600)
    _sync(runtime, client, tenant, clock, NIGHTLY)
    assert _job(runtime.engine, tenant, number).budget == Decimal("2500.00")  # XPM and warehouse agree
    # with nothing pending any more, XPM's next change comes through as usual
    admin(sandbox, "PATCH", f"tenants/{tenant}/jobs/{number}", {"budget": "777.00"})
    clock.advance(3600)
    _sync(runtime, client, tenant, clock, NIGHTLY)
    assert _job(runtime.engine, tenant, number).budget == Decimal("777.00")


def test_pending_client_phone_survives_a_full_client_read(runtime, sandbox, tenant, client, clock):
    _sync(runtime, client, tenant, clock, INITIAL)
    uuid = next(c.uuid for c in sandbox.tenant(tenant).clients.values() if not c.is_deleted)
    enqueue(runtime.engine, tenant, [{"kind": "client", "op": "update", "key": uuid,
                                      "fields": {"Phone": "+64 9 000 1111", "WebSite": "https://example.test"}}],
            clock=clock)
    admin(sandbox, "PATCH", f"tenants/{tenant}/clients/{uuid}", {"phone": "+1 555 0000", "email": "new@example.test"})
    clock.advance(3600)
    _sync(runtime, client, tenant, clock, NIGHTLY)
    row = _client_row(runtime.engine, tenant, uuid)
    assert (row.phone, row.website, row.email) == ("+64 9 000 1111", "https://example.test", "new@example.test")
