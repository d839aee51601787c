"""The refresh lease's compare-and-set: a refresher that lost its lease never overwrites a newer rotation.

A holder slower than its lease (``refresh_lease_seconds``) is taken over; whichever of the two stores
first wins, the other uses the stored token. Xero accepts both calls (the same old token, in grace).
"""

from __future__ import annotations

import httpx
import pytest

from xpm_pipeline.secrets import Secret, TokenCipher
from xpm_pipeline.xpm.auth import OAuthClient
from xpm_pipeline.xpm.tokens import REFRESH_GRACE, TokenStore
from xpm_pipeline_tests.xpm.test_tokens import ENDPOINTS, KEY, Env, env

__all__ = ["env"]  # the fixture, shared with test_tokens


class TakenOver:
    """Identity transport for a slow holder: during its call the lease ends and another store takes
    over and stores a rotation; then the holder's own call goes through (with ``then`` faults)."""

    def __init__(self, env: Env, then: list[str]):
        self.env, self.then, self.rival_got = env, then, None
        self.rival = TokenStore(env.engine, TokenCipher(KEY), env.oauth, clock=env.clock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.rival_got is None:
            self.env.clock.advance(self.rival.refresh_lease.total_seconds() + 1)  # the holder is too slow
            self.rival_got = Secret("pending")
            self.rival_got = self.rival.access_token("t1")
            self.env.identity.faults = list(self.then)
        return self.env.identity(request)


def slow_holder(env: Env, then: list[str]) -> tuple[TokenStore, TakenOver]:
    transport = TakenOver(env, then)
    oauth = OAuthClient(ENDPOINTS, "client-1", Secret("client-secret-XYZ"),
                        http=httpx.Client(transport=httpx.MockTransport(transport)), clock=env.clock)
    return TokenStore(env.engine, TokenCipher(KEY), oauth, clock=env.clock), transport


@pytest.mark.parametrize("answer", ["rotation", "invalid_grant"])
def test_a_holder_whose_lease_was_taken_over_keeps_the_stored_rotation(env, answer):
    grant_id, _ = env.connect("t1")
    env.clock.advance(3600)
    holder, transport = slow_holder(env, [] if answer == "rotation" else ["invalid_grant"])
    token = holder.access_token("t1")
    assert transport.rival_got == Secret("access-2") == token  # the holder uses the rival's stored token
    row = env.grant_row(grant_id)
    assert (row.status, row.refresh_generation, row.refresh_holder) == ("active", 1, None)
    assert env.store.cipher.decrypt(row.refresh_token_enc) == Secret("refresh-2")  # not the holder's late one
    assert env.identity.token_calls() == 2
    env.clock.advance(REFRESH_GRACE.total_seconds() + 60)
    assert env.store.access_token("t1") not in (token, None)  # the stored refresh token is the live one
    assert env.grant_row(grant_id).status == "active"


def test_lease_longer_than_the_grace_is_refused(env):
    with pytest.raises(ValueError, match="grace"):
        TokenStore(env.engine, TokenCipher(KEY), env.oauth, refresh_lease_seconds=REFRESH_GRACE.total_seconds())
