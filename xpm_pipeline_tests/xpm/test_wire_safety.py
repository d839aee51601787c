"""What the client puts on the wire and takes off it, whatever a queued key or an answer's headers hold:
a key is one quoted path segment of a write (never another path, never a query), and an answer whose
Content-Type names a charset other than UTF-8 is refused before parsing (on the scripted transport of
``test_client_rules``; ``export/test_drain.py`` sends a tampered key through the sandbox)."""

from __future__ import annotations

import pytest

from xpm_pipeline.xpm.errors import XPMParseError, XPMUnclearOutcome
from xpm_pipeline.xpm.writes import WriteValidationError, write_path
from xpm_pipeline_tests.xpm.test_client_rules import OK_STAFF, OK_TIME, TIME_FIELDS, Script, make, xml

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


@pytest.mark.parametrize("content_type", ["text/xml; charset=ISO-8859-1", "text/xml;charset=\"utf-16\"",
                                          "application/xml; charset=UTF-7", "text/xml; Charset=windows-1252"])
def test_an_answer_in_another_charset_is_refused_naming_it(content_type):
    named = content_type.split("=")[1].strip('"')
    script = Script(xml(200, OK_STAFF, Content_Type=content_type))
    client, _, _ = make(script)
    with pytest.raises(XPMParseError) as caught:
        client.staff()
    message = str(caught.value)
    assert named in message and "UTF-8" in message and len(message.splitlines()) == 1, message
    assert len(script.requests) == 1  # refused, not read again: the same answer would come back
    # a create whose answer is refused is in doubt (it may have been applied): read back, not resent
    script = Script(xml(200, OK_TIME, Content_Type=content_type))
    client, _, _ = make(script)
    with pytest.raises(XPMUnclearOutcome, match=named):
        client.write("time_add", TIME_FIELDS)
    assert len(script.requests) == 1


@pytest.mark.parametrize("content_type", ["text/xml", "text/xml; charset=utf-8", "text/xml; charset=\"UTF-8\"",
                                          "application/xml; charset=us-ascii", "text/xml; boundary=x"])
def test_utf8_answers_are_read_as_before(content_type):
    script = Script(xml(200, OK_STAFF, Content_Type=content_type))
    client, _, _ = make(script)
    assert len(client.staff()["staff"]) == 1
