"""Alert sensors: what someone must act on goes to the webhook in ``XPM_ALERT_WEBHOOK_URL`` (``xpm_pipeline.alerts``).

``xpm_failure_alert_sensor``: every failed run of this code location's jobs (the XPM jobs and asset runs),
one message each. ``xpm_condition_alert_sensor``: every few minutes, held removals and refresh tokens
near expiry (or failing to refresh); the open conditions live in its cursor, so each is posted once.
Without the webhook both skip, saying how to enable them. A post the webhook does not take fails the
tick with one line, and the next tick tries again (cursor unchanged).
"""

# No `from __future__ import annotations`: Dagster reads the resource annotations at definition time.

import dagster as dg

from xpm_pipeline.alerts import HOW_TO_ENABLE, held_removal_alerts, new_alerts, post, run_failed, token_alerts
from xpm_pipeline.defs.checks import TOKEN_WARNING_DAYS
from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.defs.sensors import _first_error, tenant_of_run
from xpm_pipeline.sync.removals import open_holds

CONDITION_INTERVAL_SECONDS = 300


@dg.run_failure_sensor(
    name="xpm_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed run (job, tenant, run id, first error line) to XPM_ALERT_WEBHOOK_URL.",
)
def xpm_failure_alert_sensor(context: dg.RunFailureSensorContext, xpm: XPMResource):
    webhook = xpm.settings().alert_webhook_url
    if webhook is None:
        return dg.SkipReason(HOW_TO_ENABLE)
    run = context.dagster_run
    post(webhook, [run_failed(run.job_name, run.run_id, tenant_of_run(run), _first_error(context))])
    context.log.info(f"alert posted: run {run.run_id} of {run.job_name} failed")
    return None


@dg.sensor(
    name="xpm_condition_alert_sensor",
    minimum_interval_seconds=CONDITION_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Posts each new held removal and each refresh token within {TOKEN_WARNING_DAYS} days of expiry (or "
    "failing to refresh) to XPM_ALERT_WEBHOOK_URL, once per condition.",
)
def xpm_condition_alert_sensor(context: dg.SensorEvaluationContext, xpm: XPMResource):
    webhook = xpm.settings().alert_webhook_url
    if webhook is None:
        return dg.SkipReason(HOW_TO_ENABLE)
    with xpm.runtime() as runtime:
        statuses = [runtime.tokens.grant_status(record.tenant_id)
                    for record in runtime.tokens.tenants(active_only=True)]
        alerts = held_removal_alerts(open_holds(runtime.engine)) + token_alerts(
            statuses, runtime.clock.now(), within_days=TOKEN_WARNING_DAYS)
    fresh, cursor = new_alerts(alerts, context.cursor)
    if fresh:
        post(webhook, [alert.text for alert in fresh])
    summary = f"{len(fresh)} new alert(s) posted, {len(alerts)} condition(s) open"
    context.log.info(summary)
    return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=cursor)


ALERT_SENSORS = [xpm_failure_alert_sensor, xpm_condition_alert_sensor]
