"""Export to XPM: a priority outbox drained within the shared quota, with exactly-once effect.

Usage::

    from xpm_pipeline.export import enqueue, read_change_file
    from xpm_pipeline.export.worker import drain
    from xpm_pipeline.export.dryrun import plan

    result = enqueue(engine, tenant_id, read_change_file("changes.jsonl"), source="changes.jsonl")
    report = drain(engine, client, ledger)          # until the queue or the quota is empty
    print(plan(engine, ledger, tenant_id))          # dry run: what goes now, what waits until when

Modules: ``changes`` (the change format and its checks), ``tables`` (``xpm_export_queue``,
``xpm_export_log``, ``v_export_queue``), ``queue`` (enqueue and every status move), ``worker`` (the
drain), ``reconcile`` (reading XPM back for items in doubt), ``protect`` (pending edits win in the
warehouse until sent), ``dryrun`` (what a drain would do, ETAs).
"""

from xpm_pipeline.export.changes import KINDS, Change, ChangeError, make_change, parse_changes, read_change_file
from xpm_pipeline.export.queue import EnqueueResult, UnknownTenant, depth, enqueue


__all__ = [
    "KINDS",
    "Change",
    "ChangeError",
    "EnqueueResult",
    "UnknownTenant",
    "depth",
    "enqueue",
    "make_change",
    "parse_changes",
    "read_change_file",
]
