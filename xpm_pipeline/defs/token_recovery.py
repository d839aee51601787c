"""``xpm_token_recovery_sensor``: a token refresh interrupted by a crash is redone within minutes.

Xero keeps a superseded refresh token alive for 30 minutes. A process killed between Xero's answer
and its commit leaves the previous token stored and a lapsed lease behind (``xpm/tokens.py``); waiting
for the next hourly run could be too late, so this sensor checks every few minutes and redoes it.
Only wiring: the work is ``recover_interrupted_refreshes``.
"""

# No `from __future__ import annotations`: Dagster reads the resource annotations at definition time.

import dagster as dg

from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.xpm.tokens import recover_interrupted_refreshes

RECOVERY_INTERVAL_SECONDS = 180
"""With the 2-minute lease, an interrupted refresh is redone about 5 minutes after it began at worst."""


@dg.sensor(
    name="xpm_token_recovery_sensor",
    minimum_interval_seconds=RECOVERY_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Redoes OAuth token refreshes whose process died before storing Xero's rotated refresh token, "
    "inside Xero's 30-minute grace.",
)
def xpm_token_recovery_sensor(context: dg.SensorEvaluationContext, xpm: XPMResource):
    with xpm.runtime() as runtime:
        results = recover_interrupted_refreshes(runtime.tokens)
    if not results:
        return dg.SkipReason("no interrupted token refresh")
    for result in results:
        if result.recovered:
            context.log.info(f"grant {result.grant_id}: refresh interrupted at {result.interrupted_at} redone")
        else:
            context.log.error(f"grant {result.grant_id}: interrupted refresh not redone: {result.error}")
    recovered = sum(1 for r in results if r.recovered)
    return dg.SkipReason(f"redid {recovered} of {len(results)} interrupted token refresh(es)")
