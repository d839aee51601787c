"""The shared per-tenant quota ledger: sync reads and export writes, from any process, within XPM's limits.

Usage::

    from xpm_pipeline.quota import QuotaLedger, QuotaLimits, background_reads

    ledger = QuotaLedger.from_settings(engine, settings)          # database clock, env defaults
    client = XPMClient(..., observers=[ledger])                   # every call is admitted first
    with background_reads():                                      # nightly reconcile: yields when low
        ...
    ledger.usage(tenant_id)                                       # status / dry run
    ledger.eta(tenant_id, 500, "write")                           # when 500 more writes could be done
    ledger.prune()                                                # rows older than 2 days

The rules are in ``ledger.py``'s docstring, the budgets per kind of call (sync reads, export writes,
background reads) in ``limits.py``, the windows in ``windows.py``, how a tenant is measured cheaply
in ``measure.py``; the tables (migration 10) in ``tables.py``; database and accelerated clocks in
``clocks.py``.
"""

from xpm_pipeline.quota.clocks import DatabaseClock, ScaledClock
from xpm_pipeline.quota.ledger import Admission, QuotaExhausted, QuotaLedger, QuotaUsage, set_tenant_limits
from xpm_pipeline.quota.limits import READ, WRITE, QuotaLimits, background_reads
from xpm_pipeline.quota.tables import create_quota_tables

__all__ = [
    "READ",
    "WRITE",
    "Admission",
    "DatabaseClock",
    "QuotaExhausted",
    "QuotaLedger",
    "QuotaLimits",
    "QuotaUsage",
    "ScaledClock",
    "background_reads",
    "create_quota_tables",
    "set_tenant_limits",
]
