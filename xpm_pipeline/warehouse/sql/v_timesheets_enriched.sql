-- Live time entries joined to their tenant, job, client, staff member and task, with hours derived.
-- hours is rounded to 2 places (NUMERIC(12, 2); REAL on SQLite, see views.py) so sums read 82.00, not
-- 81.99999999999999999999. Column comments: view_docs.py.
-- A time entry's task UUID may name the task on the job or (in some XPM data) its task-list type:
-- both joins are tried, so either way the task type resolves.
CREATE VIEW v_timesheets_enriched AS
SELECT
    ts.tenant_id,
    tn.tenant_name,
    ts.uuid AS timesheet_uuid,
    ts.entry_date,
    ts.minutes,
    CAST(ROUND(ts.minutes / 60.0, 2) AS NUMERIC(12, 2)) AS hours,
    ts.billable,
    ts.note,
    ts.start_time,
    ts.end_time,
    ts.job_number,
    j.uuid AS job_uuid,
    j.name AS job_name,
    j.state AS job_state,
    j.job_type,
    c.uuid AS client_uuid,
    c.name AS client_name,
    ts.staff_uuid,
    s.name AS staff_name,
    ts.task_uuid,
    jt.label AS task_label,
    COALESCE(jt.task_uuid, tl_direct.uuid) AS task_type_uuid,
    COALESCE(tl.name, tl_direct.name, jt.name, ts.task_name) AS task_name,
    ts._synced_at
FROM xpm_timesheets ts
LEFT JOIN xpm_tenants tn
       ON tn.tenant_id = ts.tenant_id
LEFT JOIN xpm_jobs j
       ON j.tenant_id = ts.tenant_id AND j.job_number = ts.job_number AND j._deleted_at IS NULL
LEFT JOIN xpm_clients c
       ON c.tenant_id = j.tenant_id AND c.uuid = j.client_uuid
LEFT JOIN xpm_staff s
       ON s.tenant_id = ts.tenant_id AND s.uuid = ts.staff_uuid
LEFT JOIN xpm_job_tasks jt
       ON jt.tenant_id = ts.tenant_id AND jt.uuid = ts.task_uuid
LEFT JOIN xpm_tasks tl
       ON tl.tenant_id = ts.tenant_id AND tl.uuid = jt.task_uuid
LEFT JOIN xpm_tasks tl_direct
       ON tl_direct.tenant_id = ts.tenant_id AND tl_direct.uuid = ts.task_uuid
WHERE ts._deleted_at IS NULL;
