-- The latest run of each tenant, entity and mode, with when it last succeeded.
-- Analysts: "is every tenant fresh, and what failed?"
CREATE VIEW v_sync_status AS
SELECT
    r.tenant_id,
    t.tenant_name,
    r.entity,
    r.mode,
    r.status,
    r.started_at,
    r.ended_at,
    r.rows_inserted,
    r.rows_updated,
    r.rows_deleted,
    r.api_calls,
    r.error,
    (SELECT MAX(s.started_at)
       FROM xpm_sync_runs s
      WHERE s.tenant_id = r.tenant_id AND s.entity = r.entity AND s.mode = r.mode
        AND s.status = 'succeeded') AS last_success_at
FROM xpm_sync_runs r
LEFT JOIN xpm_tenants t ON t.tenant_id = r.tenant_id
WHERE r.run_id = (
    SELECT r2.run_id
      FROM xpm_sync_runs r2
     WHERE r2.tenant_id = r.tenant_id AND r2.entity = r.entity AND r2.mode = r.mode
     ORDER BY r2.started_at DESC, r2.run_id DESC
     LIMIT 1
);
