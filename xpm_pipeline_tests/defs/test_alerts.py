"""Alerts reach a webhook (a local HTTP receiver here, Slack-compatible JSON): failed runs, held removals and
refresh tokens near expiry, each once; nothing secret in what is posted or logged; off without the webhook."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from xpm_pipeline.alerts import AlertNotDelivered, payload, post, run_failed
from xpm_pipeline.config import ConfigError, Settings
from xpm_pipeline.defs.alerts import xpm_condition_alert_sensor, xpm_failure_alert_sensor
from xpm_pipeline.secrets import Secret
from xpm_pipeline.sync.removals import HeldRemoval, clear_held, record_held

HOOK_PATH = "/services/T0000/B0000/hook-credential-xyz"


class Receiver:
    """A webhook on 127.0.0.1 that records each JSON body and answers with ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{HOOK_PATH}"

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join()


@pytest.fixture
def webhook(monkeypatch, xpm_env, receiver) -> Receiver:
    monkeypatch.setenv("XPM_ALERT_WEBHOOK_URL", receiver.url)
    return receiver


def failed_run(defs, instance, runtime, tenant):
    runtime.tokens.disconnect(tenant)  # the partition is still there: the run fails
    result = defs.resolve_job_def("xpm_nightly_job").execute_in_process(
        instance=instance, partition_key=tenant, raise_on_error=False)
    assert not result.success
    return result


def failure_context(instance, xpm, result) -> dg.RunFailureSensorContext:
    return dg.build_run_status_sensor_context(
        sensor_name=xpm_failure_alert_sensor.name, dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run, resources={"xpm": xpm},
    ).for_run_failure()


def test_a_failed_run_is_posted_once_with_job_tenant_and_error(webhook, instance, defs, xpm, partitioned, runtime,
                                                               caplog):
    caplog.set_level(logging.DEBUG)
    tenant = partitioned[1]
    result = failed_run(defs, instance, runtime, tenant)

    assert xpm_failure_alert_sensor(failure_context(instance, xpm, result)) is None
    assert [body["path"] for body in webhook.bodies] == [HOOK_PATH]
    [text] = webhook.texts()
    assert text.startswith(f"XPM run failed: xpm_nightly_job for tenant {tenant} (run {result.run_id}): ")
    assert "not connected" in text and "\n" not in text
    assert HOOK_PATH not in caplog.text and "hook-credential" not in caplog.text  # httpx logs URLs; not this one


def test_unset_webhook_skips_both_sensors_saying_how_to_enable(monkeypatch, xpm_env, instance, defs, xpm, partitioned,
                                                               runtime):
    monkeypatch.delenv("XPM_ALERT_WEBHOOK_URL", raising=False)
    result = failed_run(defs, instance, runtime, partitioned[0])
    skipped = [xpm_failure_alert_sensor(failure_context(instance, xpm, result)),
               xpm_condition_alert_sensor(dg.build_sensor_context(instance=instance, resources={"xpm": xpm}))]
    for skip in skipped:
        assert isinstance(skip, dg.SkipReason) and "set XPM_ALERT_WEBHOOK_URL" in skip.skip_message


def tick(instance, xpm, cursor):
    """One evaluation of the condition sensor on the last tick's cursor; returns the next cursor."""
    result = xpm_condition_alert_sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                resources={"xpm": xpm}))
    assert isinstance(result, dg.SensorResult)
    return result.cursor


def held(tenant, at) -> HeldRemoval:
    return HeldRemoval(tenant_id=tenant, table_name="xpm_staff", mode="nightly", removing=12, live_rows=40,
                       reason="XPM listed 28 of 40 staff", held_at=at, sync_run_id=None)


def test_held_removals_and_expiring_tokens_alert_once_per_new_condition(webhook, instance, xpm, tenants, runtime, clock):
    cursor = tick(instance, xpm, None)
    assert webhook.bodies == []  # nothing open: nothing posted

    record_held(runtime.engine, held(tenants[0], clock.now()))
    cursor = tick(instance, xpm, cursor)
    [text] = webhook.texts()
    assert text.startswith(f"XPM removal held for tenant {tenants[0]}: xpm_staff would lose 12 of 40 rows")
    assert "--accept-removals xpm_staff" in text
    cursor = tick(instance, xpm, cursor)
    assert len(webhook.bodies) == 1  # still held: not posted again

    clock.advance(timedelta(days=54).total_seconds())  # refresh tokens (60 days) now expire within 7 days
    cursor = tick(instance, xpm, cursor)
    assert len(webhook.bodies) == 2
    lines = webhook.texts()[1].splitlines()
    assert sorted(lines) == sorted(line for line in lines if line.startswith("XPM refresh token of tenant "))
    assert {tenant for tenant in tenants if any(f"tenant {tenant} expires" in line for line in lines)} == set(tenants)
    cursor = tick(instance, xpm, cursor)
    assert len(webhook.bodies) == 2

    clear_held(runtime.engine, tenants[0], ["xpm_staff"], at=clock.now())  # cleared, then held again: new
    cursor = tick(instance, xpm, cursor)
    record_held(runtime.engine, held(tenants[0], clock.now()))
    tick(instance, xpm, cursor)
    assert len(webhook.bodies) == 3 and webhook.texts()[2].startswith(f"XPM removal held for tenant {tenants[0]}")


def test_a_refused_post_fails_the_tick_in_one_line_and_the_next_tick_retries(webhook, instance, xpm, tenants, runtime,
                                                                             clock):
    record_held(runtime.engine, held(tenants[2], clock.now()))
    webhook.status = 500
    with pytest.raises(Exception) as refused:
        tick(instance, xpm, None)
    message = str(refused.value)
    assert "alert webhook (XPM_ALERT_WEBHOOK_URL) refused the message: HTTP 500" in message
    assert "hook-credential" not in message
    webhook.status = 200
    tick(instance, xpm, None)  # the cursor did not move: the same alert again
    assert len(webhook.bodies) == 2 and webhook.texts()[0] == webhook.texts()[1]


def test_post_masks_credentials_and_names_an_unreachable_webhook_without_its_url():
    error = run_failed("xpm_nightly_job", "r1", "t1", "401 for Authorization: Bearer eyJhbGciOi.secret.token\nmore")
    assert payload([error]) == {
        "text": "XPM run failed: xpm_nightly_job for tenant t1 (run r1): 401 for Authorization: Bearer ***"}
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AlertNotDelivered) as unreachable:
        post(Secret(f"http://127.0.0.1:{port}{HOOK_PATH}"), [error], timeout=2)
    assert str(unreachable.value) == "alert webhook (XPM_ALERT_WEBHOOK_URL) not reachable: ConnectError"


def test_a_malformed_webhook_url_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"XPM_ALERT_WEBHOOK_URL": "hooks.slack.com/services/T/B/credential"})
    assert "credential" not in str(refused.value) and "XPM_ALERT_WEBHOOK_URL" in str(refused.value)
    assert Settings.from_env({}).alert_webhook_url is None
