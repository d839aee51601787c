"""The Dagster code location of xpm-pipeline: ``dagster dev -m xpm_pipeline.definitions``.

One ``Definitions`` merging the areas of ``xpm_pipeline.defs``: tenant partitions (dynamic, kept by a
sensor), the sync assets and their checks, one job per flow, the hourly / nightly / health schedules,
the tenant and run-failure sensors, the alert sensors (``defs/alerts.py``), the export drain job and its sensor (``defs/export.py``), and the one resource (``XPMResource``, configured from ``XPM_*``).

Steps run in the run's own process (``in_process_executor``): a run is one tenant's sequential sync,
so a process per step would only add start-up time.
"""

from __future__ import annotations

import dagster as dg

from xpm_pipeline.defs.alerts import ALERT_SENSORS
from xpm_pipeline.defs.assets import tenants_asset, xpm_sync
from xpm_pipeline.defs.checks import ALL_CHECKS
from xpm_pipeline.defs.export import export_drain_job, xpm_export_queue, xpm_export_sensor
from xpm_pipeline.defs.jobs import ALL_JOBS
from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.defs.schedules import ALL_SCHEDULES
from xpm_pipeline.defs.sensors import ALL_SENSORS



def make_definitions(xpm: XPMResource | None = None) -> dg.Definitions:
    """The code location; tests pass an ``XPMResource`` whose clock they control."""
    return dg.Definitions(
        assets=[xpm_sync, tenants_asset, xpm_export_queue],
        asset_checks=ALL_CHECKS,
        jobs=[*ALL_JOBS, export_drain_job],
        schedules=ALL_SCHEDULES,
        sensors=[*ALL_SENSORS, xpm_export_sensor, *ALERT_SENSORS],
        resources={"xpm": xpm or XPMResource()},
        executor=dg.in_process_executor,
    )


defs = make_definitions()
