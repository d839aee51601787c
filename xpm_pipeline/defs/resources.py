"""The one resource: XPM plus the warehouse, built from the ``XPM_*`` environment.

``XPMResource.runtime()`` opens what the CLI opens (``runtime.open_runtime``: engine with migrations
applied, encrypted token store, one XPM client per tenant), so a Dagster run and ``xpm-pipeline sync``
behave the same. Settings come only from ``settings_from_env`` (``Settings.from_env``): nothing in the
Dagster layer reads ``os.environ`` itself.

``local_resource`` injects a clock and settings instead: the demo's simulated day and the tests run the
same assets on a ``ManualClock`` shared with the sandbox (so waiting out XPM's per-minute limit costs
no wall-clock time), against a warehouse they chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.config import Settings
from xpm_pipeline.runtime import Runtime, open_runtime


def settings_from_env() -> Settings:
    """The environment switch, in one place: warehouse URL, XPM and identity URLs, OAuth app, token key."""
    return Settings.from_env()


class XPMResource(dg.ConfigurableResource):
    """Warehouse and XPM access for one run; every XPM call goes through the tenant's ``XPMClient``.

    ``clock()`` and ``settings()`` are what ``local_resource`` overrides; production uses these.
    """

    reconcile_max_calls: int = Field(
        default=40,
        description="Most XPM calls one reconciliation check may spend per tenant (the quota ledger still "
        "admits each call); entities that do not fit are reported as not checked.",
    )

    def clock(self) -> Clock:
        return SYSTEM_CLOCK

    def settings(self) -> Settings:
        return settings_from_env()

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        runtime = open_runtime(self.settings(), clock=self.clock())
        try:
            yield runtime
        finally:
            runtime.close()


def local_resource(clock: Clock, settings: Settings | None = None, **fields) -> XPMResource:
    """``XPMResource`` on an injected clock and, optionally, explicit settings (default: the environment).

    Clock and settings are Python objects, not run config, so they ride on a subclass made here rather
    than on config fields; the resource's own fields (``reconcile_max_calls``) pass through.
    """

    class LocalXPMResource(XPMResource):
        def clock(self) -> Clock:
            return clock

        def settings(self) -> Settings:
            return settings if settings is not None else settings_from_env()

    return LocalXPMResource(**fields)
