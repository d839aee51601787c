"""What the client puts on the wire, whatever a queued key holds: a key is one quoted path segment of a
write (never another path, never a query) (on the scripted transport of ``test_client_rules``;
``export/test_drain.py`` sends a tampered key through the sandbox)."""

from __future__ import annotations

import pytest

from xpm_pipeline.xpm.writes import WriteValidationError, write_path
from xpm_pipeline_tests.xpm.test_client_rules import Script, make, xml

UUID = "f30c8127-b101-455c-882e-92d856bc5576"
DELETED = b"<Response><Status>OK</Status></Response>"


@pytest.mark.parametrize(
    "key, segment",
    [
        (UUID, UUID),
        (f"../../client.api/contact/{UUID}", f"..%2F..%2Fclient.api%2Fcontact%2F{UUID}"),
        (f"{UUID}?detailed=true", f"{UUID}%3Fdetailed%3Dtrue"),
        (f"{UUID}#x", f"{UUID}%23x"),
        ("50%25", "50%2525"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a b\r\nHost: evil", "a%20b%0D%0AHost%3A%20evil"),
    ],
    ids=["uuid", "traversal", "query", "fragment", "percent", "dot-dot", "dot", "crlf"],
)
def test_a_key_is_one_quoted_segment_of_the_request_path(key, segment):
    assert write_path("time_delete", key) == f"time.api/delete/{segment}"
    assert write_path("job_task_complete", key) == f"job.api/task/{segment}/complete"
    script = Script(xml(200, DELETED))
    client, _, _ = make(script)
    client.write("time_delete", key=key)
    (request,) = script.requests
    assert request.url.raw_path.decode() == f"/practicemanager/3.1/time.api/delete/{segment}"
    assert request.url.query == b""


def test_a_write_without_its_key_is_refused_before_any_call():
    script = Script()
    client, _, _ = make(script)
    for key in (None, ""):
        with pytest.raises(WriteValidationError, match="time_delete needs a key"):
            client.write("time_delete", key=key)
    assert script.requests == []
