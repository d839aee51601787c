"""The recovery sensor redoes an interrupted token refresh inside Xero's grace, with no run needed."""

from __future__ import annotations

import dagster as dg
import pytest

from xpm_pipeline.defs.token_recovery import xpm_token_recovery_sensor
from xpm_pipeline.xpm.auth import IdentityUnavailable
from xpm_pipeline.xpm.tokens import REFRESH_GRACE
from xpm_pipeline_tests.defs.conftest import BOTH_DIALECTS


def tick(xpm):
    return xpm_token_recovery_sensor(dg.build_sensor_context(resources={"xpm": xpm}))


@BOTH_DIALECTS
def test_sensor_redoes_a_refresh_whose_answer_never_came(xpm, runtime, tenants, sandbox, clock):
    tenant = tenants[0]
    first = tick(xpm)
    assert isinstance(first, dg.SkipReason) and first.skip_message == "no interrupted token refresh"

    clock.advance(1800)  # the access token has expired: the next use refreshes
    sandbox.add_fault(path="connect/token", kind="lost_refresh", count=1 + runtime.tokens.lost_response_retries)
    with pytest.raises(IdentityUnavailable):
        runtime.tokens.access_token(tenant)  # Xero rotated every time; no answer reached us

    redone = tick(xpm)
    assert isinstance(redone, dg.SkipReason) and redone.skip_message == "redid 1 of 1 interrupted token refresh(es)"
    assert tick(xpm).skip_message == "no interrupted token refresh"

    clock.advance(REFRESH_GRACE.total_seconds() + 60)  # the token stored before the lost answers is dead now
    assert runtime.tokens.oauth.connections(runtime.tokens.access_token(tenant))
    assert runtime.tokens.grant_status(tenant).status == "active"
