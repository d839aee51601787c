"""What every analyst view and view column means: the one source of the PostgreSQL comments
(``COMMENT ON VIEW`` / ``COMMENT ON COLUMN``) and of the README's view table, for SQLite users, who
have no comments. Columns are listed in the views' own order; a test holds the views, this file and the
README to each other. After changing it: ``python -m xpm_pipeline.warehouse.view_docs README.md``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ViewDoc:
    comment: str
    columns: dict[str, str]


_TENANT_ID = "XPM organisation (Xero-Tenant-Id) the row belongs to."
_TENANT_NAME = "Organisation name as Xero lists it (xpm_tenants.tenant_name)."

VIEW_DOCS: dict[str, ViewDoc] = {
    "v_sync_status": ViewDoc(
        "The latest sync run of each tenant, entity and mode, with when it last succeeded.",
        {
            "tenant_id": _TENANT_ID,
            "tenant_name": _TENANT_NAME,
            "entity": "Entity name from the registry (client, timesheet, ...).",
            "mode": "initial | hourly | nightly | resync (re-sync all).",
            "status": "Outcome of this latest run: running | succeeded | failed.",
            "started_at": "When the run started (UTC).",
            "ended_at": "When it ended (UTC); NULL while running or if killed.",
            "rows_inserted": "Rows the run added.",
            "rows_updated": "Rows the run changed.",
            "rows_deleted": "Rows the run found deleted in XPM (soft-deleted here).",
            "api_calls": "XPM calls the run made.",
            "error": "Why the run failed, one line; NULL when it did not.",
            "last_success_at": "Start of the latest succeeded run of this tenant, entity and mode (UTC).",
        },
    ),
    "v_timesheets_enriched": ViewDoc(
        "Live time entries with their tenant, job, client, staff member and task names, and hours.",
        {
            "tenant_id": _TENANT_ID,
            "tenant_name": _TENANT_NAME,
            "timesheet_uuid": "XPM time entry UUID (xpm_timesheets.uuid).",
            "entry_date": "Calendar date the time is for.",
            "minutes": "Duration in minutes (may be negative).",
            "hours": (
                "minutes / 60 rounded to 2 places per entry (NUMERIC(12,2); REAL on SQLite), so sums print as "
                "82.00; SUM(minutes) / 60.0 totals to the minute."
            ),
            "billable": "Whether the time is billable.",
            "note": "Note on the entry.",
            "start_time": "Start time HH:MM, when entered as a range.",
            "end_time": "End time HH:MM, when entered as a range.",
            "job_number": "Job number the time was recorded against.",
            "job_uuid": "XPM job UUID; NULL when the job is not in the warehouse.",
            "job_name": "Job name.",
            "job_state": "Job state (Completed when missing from XPM's active list).",
            "job_type": "Job type.",
            "client_uuid": "XPM client UUID of the job's client.",
            "client_name": "Client name as shown in XPM.",
            "staff_uuid": "Staff member who recorded the time.",
            "staff_name": "Staff member's name.",
            "task_uuid": "Task on the job (xpm_job_tasks.uuid) the time is for.",
            "task_label": "Label distinguishing repeated tasks of one type on a job.",
            "task_type_uuid": "Task type in the firm's task list (xpm_tasks.uuid).",
            "task_name": "Task name: the task type's, else the job task's, else as XPM returned it with the entry.",
            "_synced_at": "When a sync last inserted or changed the time entry (UTC).",
        },
    ),
    "v_export_queue": ViewDoc(
        "The export queue like an inbox: what waits for XPM, in which order, and what happened.",
        {
            "item_id": "Queue item id (enqueue order).",
            "tenant_id": "XPM organisation the change is for.",
            "tenant_name": _TENANT_NAME,
            "kind": "timesheet | job | client | task.",
            "op": "create | update | delete.",
            "priority": "1 timesheets, 2 job updates, 3 client updates, 4 task updates: lower goes first, then age.",
            "priority_name": "The priority in words (timesheets, job updates, client updates, task updates).",
            "status": "pending | sending | in_doubt | done | dead.",
            "queue_position": "Order the drain sends the tenant's waiting items (1 = next); NULL once finished.",
            "entity_key": "The changed thing: XPM UUID (job number for jobs) for updates, your own local id for creates.",
            "remote_id": "XPM's id of the result (new UUID for creates).",
            "target_table": "Warehouse table of the row the item changes or created.",
            "target_key": "Key of that row in target_table: remote_id for creates, entity_key otherwise.",
            "attempts": "Times sent to XPM (429s do not count).",
            "coalesced": "Later updates merged into this item.",
            "last_error": "Why the last attempt failed, or why the item is dead.",
            "xpm_response": "XPM's answer to the last send (trimmed).",
            "not_before": "Not sent before this (backoff after a failure).",
            "source": "Where the change came from (file name, 'api').",
            "payload": "The change's fields as JSON, XPM element names.",
            "created_at": "When first queued (the item's age).",
            "updated_at": "Last change to the item.",
            "sent_at": "When last marked sending.",
            "finished_at": "When it became done or dead.",
        },
    ),
}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_statements(view: str) -> list[str]:
    """PostgreSQL statements that comment ``view`` and each of its columns."""
    doc = VIEW_DOCS[view]
    return [f"COMMENT ON VIEW {view} IS {_literal(doc.comment)}"] + [
        f"COMMENT ON COLUMN {view}.{column} IS {_literal(text)}" for column, text in doc.columns.items()
    ]


README_START = "<!-- view columns: generated by `python -m xpm_pipeline.warehouse.view_docs README.md` -->"
README_END = "<!-- end of view columns -->"


def readme_table() -> str:
    """The README's view-column table, markers included."""
    lines = [README_START, "", "| view | column | what |", "|---|---|---|"]
    for view, doc in VIEW_DOCS.items():
        lines.append(f"| `{view}` | | {_cell(doc.comment)} |")
        lines += [f"| | `{column}` | {_cell(text)} |" for column, text in doc.columns.items()]
    return "\n".join([*lines, "", README_END])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme_section(readme: str) -> str | None:
    """The generated table as it stands in ``readme``, or None without its markers."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        return None
    return readme[start:end + len(README_END)]


def update_readme(path: Path) -> None:
    readme = path.read_text(encoding="utf-8")
    current = readme_section(readme)
    if current is None:
        raise SystemExit(f"{path}: no view-column markers ({README_START!r} ... {README_END!r})")
    path.write_text(readme.replace(current, readme_table()), encoding="utf-8")


if __name__ == "__main__":
    update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
