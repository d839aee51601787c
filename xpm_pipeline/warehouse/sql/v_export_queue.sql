-- The export queue like an inbox: what is waiting for XPM, in which order, and what happened.
-- queue_position: the order the drain will send a tenant's waiting items (1 = next); NULL once
-- finished. target_table + target_key join an item to the warehouse row it changes or created.
CREATE VIEW v_export_queue AS
SELECT
    q.item_id,
    q.tenant_id,
    t.tenant_name,
    q.kind,
    q.op,
    q.priority,
    CASE q.priority
        WHEN 1 THEN 'timesheets'
        WHEN 2 THEN 'job updates'
        WHEN 3 THEN 'client updates'
        ELSE 'task updates'
    END AS priority_name,
    q.status,
    CASE WHEN q.status IN ('pending', 'sending', 'in_doubt')
         THEN ROW_NUMBER() OVER (
              PARTITION BY q.tenant_id, CASE WHEN q.status IN ('pending', 'sending', 'in_doubt') THEN 0 ELSE 1 END
              ORDER BY CASE q.status WHEN 'sending' THEN 0 WHEN 'in_doubt' THEN 1 ELSE 2 END, q.priority, q.item_id)
    END AS queue_position,
    q.entity_key,
    q.remote_id,
    CASE q.kind
        WHEN 'timesheet' THEN 'xpm_timesheets'
        WHEN 'job' THEN 'xpm_jobs'
        WHEN 'client' THEN 'xpm_clients'
        ELSE 'xpm_job_tasks'
    END AS target_table,
    CASE WHEN q.op = 'create' THEN q.remote_id ELSE q.entity_key END AS target_key,
    q.attempts,
    q.coalesced,
    q.last_error,
    q.xpm_response,
    q.not_before,
    q.source,
    q.payload,
    q.created_at,
    q.updated_at,
    q.sent_at,
    q.finished_at
FROM xpm_export_queue q
LEFT JOIN xpm_tenants t ON t.tenant_id = q.tenant_id;
