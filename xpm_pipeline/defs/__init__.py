"""The Dagster layer: tenant partitions, sync assets, checks, jobs, schedules and sensors.

Everything here only wires the plain functions of ``sync/``, ``xpm/`` and ``warehouse/`` (which
know nothing of Dagster) to Dagster's scheduling, backfills and UI. The one ``Definitions`` object is
in ``xpm_pipeline.definitions``.
"""
