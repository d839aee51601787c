"""Wiring shared by the CLI, the demo and (later) the Dagster resources: settings -> engine ->
token store -> one XPM client per tenant. Nothing here talks to XPM by itself.

Work on the warehouse alone (queueing changes, listing or planning the queue) needs no XPM credentials:
``open_runtime(xpm=False)`` builds the token store only if something asks for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.config import ConfigError, Settings, secure_home
from xpm_pipeline.quota import QuotaLedger
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.migrate import migrate
from xpm_pipeline.xpm.client import CallObserver, XPMClient
from xpm_pipeline.xpm.tokens import TenantNotConnected, TokenStore


class WarehouseUnavailable(RuntimeError):
    """The warehouse database does not answer (down, wrong host or credentials)."""


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    ledger: QuotaLedger
    clock: Clock = field(default=SYSTEM_CLOCK)
    _tokens: TokenStore | None = field(default=None, repr=False)

    @property
    def tokens(self) -> TokenStore:
        """The token store, built on first use: it needs XPM_TOKEN_KEY, XPM_CLIENT_ID and XPM_CLIENT_SECRET."""
        if self._tokens is None:
            self._tokens = TokenStore.from_settings(self.settings, self.engine, clock=self.clock)
        return self._tokens

    def client(self, tenant_id: str, observers: Sequence[CallObserver] = ()) -> XPMClient:
        """A client whose every call is first admitted by the shared quota ledger."""
        known = {t.tenant_id for t in self.tokens.tenants(active_only=True)}
        if tenant_id not in known:
            raise TenantNotConnected(
                f"tenant {tenant_id} is not connected; connected: {', '.join(sorted(known)) or 'none'} "
                "(run `xpm-pipeline connect`)"
            )
        return XPMClient(
            base_url=self.settings.api_base_url,
            tenant_id=tenant_id,
            tokens=self.tokens,
            clock=self.clock,
            observers=[self.ledger, *observers],
        )

    def close(self) -> None:
        if self._tokens is not None:
            self._tokens.oauth.close()
        self.engine.dispose()


def open_runtime(settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK, xpm: bool = True) -> Runtime:
    """Connect to the warehouse and bring its schema up to date; with ``xpm`` (work that calls XPM), build
    the token store now, so missing credentials stop the command before it starts."""
    settings = settings or Settings.from_env()
    secure_home(settings.home)
    engine = make_engine(settings.warehouse_url)
    try:
        migrate(engine, clock=clock)
    except (OperationalError, InterfaceError) as exc:  # the first connection: name the database, not the driver
        engine.dispose()
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise WarehouseUnavailable(
            f"cannot reach the warehouse {engine.url.render_as_string(hide_password=True)}: {reason} "
            "(check XPM_WAREHOUSE_URL)"
        ) from None
    try:
        tokens = TokenStore.from_settings(settings, engine, clock=clock) if xpm else None
    except ConfigError:
        engine.dispose()
        raise
    # Production counts quota on the database's clock (every process and host agrees); an injected
    # clock (tests, the demo's simulated day) drives the ledger too.
    ledger = QuotaLedger.from_settings(engine, settings, clock=None if clock is SYSTEM_CLOCK else clock)
    return Runtime(settings=settings, engine=engine, ledger=ledger, clock=clock, _tokens=tokens)
