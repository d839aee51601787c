"""``xpm-pipeline export ...`` and ``xpm-pipeline queue``: queue changes for XPM, send them, see the outbox.

Only ``export drain`` talks to XPM and needs its credentials; the others work on the warehouse alone
(the tenant must be registered there), so an analyst can queue and plan without the app's secret."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xpm_pipeline.cli_text import safe

# Outside text (keys, XPM's answers, tenant ids) goes through cli_text.safe; emoji=False shows ":x:" as written.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

export_app = typer.Typer(
    help="Write changes back to XPM: queue them from a change file, send them within the quota, plan a drain.",
    no_args_is_help=True,
)

TenantOption = Annotated[str, typer.Option("--tenant", help="XPM tenant id (see `xpm-pipeline tenants`).")]


def _when(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return ""
    if now is not None and moment <= now:
        return "now"
    text = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if now is not None:
        seconds = (moment - now).total_seconds()
        text += f" (in {_span(seconds)})"
    return text


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


@export_app.command("add")
def export_add(
    tenant: TenantOption,
    file: Annotated[Path, typer.Option("--file", help="Change file: one JSON object a line, "
                                       '{"kind": timesheet|job|client|task, "op": create|update|delete, '
                                       '"key": ..., "fields": {XPM element names}}.')],
) -> None:
    """Queue the changes of a JSONL file. Every line is checked first: one bad line queues nothing.

    Updates to something already waiting are merged into its pending item; a create already queued
    under the same key is not queued again, so adding the same file twice is harmless.
    """
    from xpm_pipeline.export import enqueue, read_change_file
    from xpm_pipeline.runtime import open_runtime

    changes = read_change_file(file)  # before touching the warehouse: a bad file changes nothing
    runtime = open_runtime(xpm=False)
    try:
        result = enqueue(runtime.engine, tenant, changes, source=file.name, clock=runtime.clock)
    finally:
        runtime.close()
    console.print(
        f"queued {result.added} new, merged {result.coalesced} into waiting items, "
        f"{result.duplicates} already queued; {result.shown_in_warehouse} warehouse row(s) now show the pending values",
        highlight=False,
    )


@export_app.command("drain")
def export_drain(
    tenant: TenantOption,
    max_items: Annotated[Optional[int], typer.Option("--max-items", min=1, help="Stop after this many items.")] = None,
    max_wait: Annotated[float, typer.Option(help="Seconds to wait for quota before stopping (items stay queued).")] = 120.0,
    lease: Annotated[float, typer.Option(min=1, help="Seconds a claimed item stays this worker's; if the worker dies, "
                                         "others settle its items after this. Must exceed the slowest XPM call.")] = 600.0,
) -> None:
    """Send the tenant's queue to XPM now, in priority order, until the queue or the quota is empty."""
    from xpm_pipeline.export import depth
    from xpm_pipeline.export.worker import drain
    from xpm_pipeline.runtime import open_runtime

    runtime = open_runtime()
    try:
        total = depth(runtime.engine, tenant).open
        with runtime.client(tenant) as client, _progress() as progress:
            task = progress.add_task(f"sending to XPM ({safe(tenant)})", total=total or None)
            report = drain(
                runtime.engine, client, runtime.ledger, max_items=max_items, max_wait=max_wait, lease=lease,
                on_item=lambda item, outcome: progress.advance(task),
            )
    finally:
        runtime.close()
    line = (f"sent {report.sent}: {report.done} done, {report.dead} dead, {report.in_doubt} unclear "
            f"({report.reconciled} settled by reading XPM back), {report.requeued} back in the queue; "
            f"stopped: {safe(report.stopped)}")
    if report.resume_at is not None:
        line += f"; quota returns {_when(report.resume_at)}"
    console.print(line, highlight=False)
    if report.error:
        err_console.print(f"error: {safe(report.error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


@export_app.command("dry-run")
def export_dry_run(
    tenant: TenantOption,
    show: Annotated[int, typer.Option(help="Items to list (0: summary only).")] = 20,
) -> None:
    """What a drain would do now, without calling XPM: calls needed, what goes at once, what waits and until when."""
    from xpm_pipeline.export.dryrun import plan
    from xpm_pipeline.runtime import open_runtime

    runtime = open_runtime(xpm=False)
    try:
        _check_known(runtime, tenant)
        result = plan(runtime.engine, runtime.ledger, tenant)
    finally:
        runtime.close()
    usage = result.usage
    console.print(safe(result.summary()), highlight=False)
    console.print(
        f"quota now: {usage.minute_remaining} call(s) left this minute, {usage.write_remaining} export call(s) left "
        f"today (reserve of {usage.limits.daily_reserve} kept for syncs)"
        + (f"; blocked until {_when(usage.blocked_until)} ({safe(usage.blocked_problem)})" if usage.blocked_until else ""),
        highlight=False,
    )
    if show and result.items:
        console.print(_items_table(result.items[:show], result.at, title="drain order"))


def _check_known(runtime, tenant: str) -> None:
    from xpm_pipeline.export.queue import check_tenant

    with runtime.engine.connect() as conn:
        check_tenant(conn, tenant)


@export_app.command("retry-dead")
def export_retry_dead(
    tenant: TenantOption,
    item: Annotated[Optional[list[int]], typer.Option("--item", help="Only this item id (repeatable).")] = None,
) -> None:
    """Put dead items back in the queue, after fixing in XPM what it refused (see `xpm-pipeline queue --status dead`)."""
    from xpm_pipeline.export.queue import reset_dead
    from xpm_pipeline.runtime import open_runtime

    runtime = open_runtime(xpm=False)
    try:
        _check_known(runtime, tenant)
        count = reset_dead(runtime.engine, tenant, item, clock=runtime.clock)
    finally:
        runtime.close()
    console.print(f"{count} dead item(s) back in the queue", highlight=False)


def _registered_tenants(runtime) -> list[str]:
    """Every tenant the warehouse knows, connected or not, by name (no token store: no credentials needed)."""
    from sqlalchemy import select

    from xpm_pipeline.warehouse.control import tenants

    with runtime.engine.connect() as conn:
        return list(conn.execute(select(tenants.c.tenant_id).order_by(tenants.c.tenant_name, tenants.c.tenant_id)).scalars())


def _items_table(items, now: datetime, *, title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "item", "priority", "change", "key", "status", "tries", "goes out", "last error"):
        table.add_column(column, overflow="fold")
    for entry in items:
        table.add_row(
            str(entry.position), str(entry.item_id), entry.priority_name, safe(f"{entry.kind} {entry.op}"),
            safe(entry.entity_key), safe(entry.status), str(entry.attempts), _when(entry.eta, now),
            safe((entry.last_error or "")[:120]),
        )
    return table


def queue(
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Only this tenant (default: every tenant).")] = None,
    status: Annotated[Optional[list[str]], typer.Option("--status", help="Only items with this status (repeatable): pending, sending, in_doubt, done, dead.")] = None,
    limit: Annotated[int, typer.Option(help="Items listed per tenant.")] = 50,
) -> None:
    """The export queue like an inbox: what waits, in which order, when it goes out, and why anything is dead."""
    from xpm_pipeline.export import tables as T
    from xpm_pipeline.export.changes import PRIORITY_NAMES
    from xpm_pipeline.export.dryrun import plan
    from xpm_pipeline.export.queue import depth, open_items
    from xpm_pipeline.runtime import open_runtime

    wanted = list(status or [])
    unknown = sorted(set(wanted) - set(T.STATUSES))
    if unknown:
        raise typer.BadParameter(f"unknown status {', '.join(unknown)}; choose from {', '.join(T.STATUSES)}",
                                 param_hint="--status")
    runtime = open_runtime(xpm=False)
    try:
        if tenant:
            _check_known(runtime, tenant)
            tenant_ids = [tenant]
        else:
            tenant_ids = _registered_tenants(runtime)
        if not tenant_ids:
            console.print("no tenants: connect one with `xpm-pipeline connect`")
            return
        for tenant_id in tenant_ids:
            counts = depth(runtime.engine, tenant_id)
            waiting = ", ".join(f"{PRIORITY_NAMES[p]} {n}" for p, n in sorted(counts.open_by_priority.items()))
            console.print(
                f"[bold]{safe(tenant_id)}[/bold]: " + ", ".join(f"{s} {counts.by_status[s]}" for s in T.STATUSES)
                + (f" — waiting: {waiting}" if waiting else ""),
                highlight=False,
            )
            open_wanted = not wanted or set(wanted) & set(T.OPEN_STATUSES)
            if open_wanted and counts.open:
                result = plan(runtime.engine, runtime.ledger, tenant_id)
                items = [i for i in result.items if not wanted or i.status in wanted][:limit]
                if items:
                    console.print(_items_table(items, result.at, title=f"waiting for XPM ({safe(result.summary())})"))
            closed = [s for s in (wanted or [T.DEAD]) if s not in T.OPEN_STATUSES]
            if closed:
                rows = open_items(runtime.engine, tenant_id, statuses=closed, limit=limit)
                if rows:
                    console.print(_closed_table(rows, closed))
    finally:
        runtime.close()


def _closed_table(rows, statuses) -> Table:
    from xpm_pipeline.export.changes import PRIORITY_NAMES

    table = Table(title=" and ".join(statuses))
    for column in ("item", "priority", "change", "key", "status", "tries", "XPM id", "finished", "reason / answer"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row.item_id), PRIORITY_NAMES[row.priority], safe(f"{row.kind} {row.op}"), safe(row.entity_key),
            safe(row.status), str(row.attempts), safe(row.remote_id or ""), _when(row.finished_at),
            safe(((row.last_error if row.status == "dead" else row.xpm_response) or "")[:160]),
        )
    return table


def mount(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
    app.command("queue")(queue)
