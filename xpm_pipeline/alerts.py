"""Alerts that leave the box: one Slack-compatible webhook post (``{"text": ...}``) per thing someone must act on.

Plain functions, so the Dagster sensors (``defs/alerts.py``) only wire them: the messages for a failed run,
a held removal and a refresh token nearing expiry (or failing to refresh); which conditions are new since
the last tick (the sensor keeps the open ones in its cursor, so each alerts once, and again only after it
cleared and came back); and the post itself. Every message goes through ``secrets.redact``; the webhook
URL (it carries its own credential) is never in a message, a log line or an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx

from xpm_pipeline.secrets import Secret, redact
from xpm_pipeline.sync.removals import HeldRemoval
from xpm_pipeline.xpm.tokens import GrantStatus

WEBHOOK_ENV = "XPM_ALERT_WEBHOOK_URL"
HOW_TO_ENABLE = f"alerts are off: set {WEBHOOK_ENV} to a Slack-compatible incoming webhook URL to enable them"
POST_TIMEOUT_SECONDS = 10.0


class AlertNotDelivered(RuntimeError):
    """The webhook did not take the message (one line, without the URL)."""


@dataclass(frozen=True)
class Alert:
    key: str
    """Identifies the condition (not the tick): the same open condition has the same key."""
    text: str


def run_failed(job: str, run_id: str, tenant_id: str | None, error: str) -> str:
    tenant = f" for tenant {tenant_id}" if tenant_id else ""
    return f"XPM run failed: {job}{tenant} (run {run_id}): {error.strip().splitlines()[0] if error.strip() else 'error'}"


def held_removal_alerts(holds: Iterable[HeldRemoval]) -> list[Alert]:
    """A removal the sync's guard stopped: someone checks XPM, then accepts it (or it clears by itself)."""
    return [
        Alert(
            key=f"held/{held.tenant_id}/{held.table_name}/{held.held_at.isoformat()}",
            text=f"XPM removal held for tenant {held.tenant_id}: {held.table_name} would lose {held.removing} of "
            f"{held.live_rows} rows ({held.reason}). Check XPM, then accept with "
            f"`xpm-pipeline sync --tenant {held.tenant_id} --accept-removals {held.table_name}`.",
        )
        for held in holds
    ]


def token_alerts(statuses: Iterable[GrantStatus], now: datetime, *, within_days: float) -> list[Alert]:
    """Refresh tokens within ``within_days`` of expiry, or whose last refresh failed: reconnect in time."""
    alerts = []
    for status in statuses:
        if status.refresh_expires_within(now, days=within_days):
            alerts.append(Alert(
                key=f"token-expiry/{status.tenant_id}/{status.refresh_expires_at.isoformat()}",
                text=f"XPM refresh token of tenant {status.tenant_id} expires {status.refresh_expires_at:%Y-%m-%d %H:%M}"
                " UTC: run `xpm-pipeline connect` before the syncs stop.",
            ))
        if status.last_error:
            digest = hashlib.sha256(status.last_error.encode()).hexdigest()[:12]
            alerts.append(Alert(
                key=f"token-error/{status.tenant_id}/{digest}",
                text=f"XPM token refresh failed for tenant {status.tenant_id}: {status.last_error.splitlines()[0]}",
            ))
    return alerts


def new_alerts(alerts: Sequence[Alert], cursor: str | None) -> tuple[list[Alert], str]:
    """The alerts not open at the last tick, and the cursor naming every alert open now."""
    seen = set(json.loads(cursor)) if cursor else set()
    return [alert for alert in alerts if alert.key not in seen], json.dumps(sorted({a.key for a in alerts}))


def payload(texts: Sequence[str]) -> dict:
    """Slack's incoming-webhook body; anything shaped like a credential masked."""
    return {"text": redact("\n".join(texts))}


class _MaskWebhook(logging.Filter):
    def __init__(self, urls: set[str]) -> None:
        super().__init__()
        self.urls = urls

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        for url in self.urls:
            masked = masked.replace(url, f"<{WEBHOOK_ENV}>")
        if masked != message:
            record.msg, record.args = masked, None
        return True


@contextmanager
def _webhook_masked_in_http_logs(url: str) -> Iterator[None]:
    """httpx logs each request's URL at INFO; the webhook's URL is its credential."""
    mask = _MaskWebhook({url, str(httpx.URL(url))})
    logger = logging.getLogger("httpx")
    logger.addFilter(mask)
    try:
        yield
    finally:
        logger.removeFilter(mask)


def post(webhook_url: Secret, texts: Sequence[str], *, timeout: float = POST_TIMEOUT_SECONDS) -> None:
    """One POST of all the texts; raises ``AlertNotDelivered`` (one line) when the webhook does not take it."""
    try:
        with _webhook_masked_in_http_logs(webhook_url.reveal()):
            response = httpx.post(webhook_url.reveal(), json=payload(texts), timeout=timeout)
    except httpx.HTTPError as exc:
        raise AlertNotDelivered(f"alert webhook ({WEBHOOK_ENV}) not reachable: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise AlertNotDelivered(f"alert webhook ({WEBHOOK_ENV}) refused the message: HTTP {response.status_code}")
