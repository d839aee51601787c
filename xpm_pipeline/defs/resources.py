"""The one resource: XPM plus the warehouse, built from the ``XPM_*`` environment.

``XPMResource.runtime()`` opens what the CLI opens (``runtime.open_runtime``: engine with migrations
applied, encrypted token store, one XPM client per tenant), so a Dagster run and ``xpm-pipeline sync``
behave the same. Settings come only from ``settings_from_env`` (``Settings.from_env``): nothing in the
Dagster layer reads ``os.environ`` itself.
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

    Tests subclass it to override ``clock()`` with a ``ManualClock`` shared with the sandbox.
    """

    reconcile_max_calls: int = Field(
        default=40,
        description="Most XPM calls one reconciliation check may spend per tenant (the quota ledger still "
        "admits each call); entities that do not fit are reported as not checked.",
    )

    def clock(self) -> Clock:
        return SYSTEM_CLOCK

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        runtime = open_runtime(settings_from_env(), clock=self.clock())
        try:
            yield runtime
        finally:
            runtime.close()
