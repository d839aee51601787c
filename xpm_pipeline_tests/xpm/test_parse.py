"""Registry-driven parsing: typed values, nested children, envelope errors, hostile documents."""

from datetime import date
from decimal import Decimal

import pytest

from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.xpm.errors import XPMParseError
from xpm_pipeline.xpm.parse import ResponseStatusError, parse_response

TIME = (
    b"<Time><UUID>F30C8127-b101-455c-882e-92d856bc5576</UUID><Job><ID>J001042</ID><Name>FY26 Accounts</Name></Job>"
    b"<Task><UUID>301e019f-c41e-45cf-aa2f-10569900b82c</UUID><Name>Year-end review</Name></Task>"
    b"<Staff><UUID>d47b74e4-cc6c-41c5-b880-e60ac2f9e79c</UUID><Name>Ana Reyes</Name></Staff>"
    b"<Date>2026-08-14T00:00:00</Date><Minutes>-90</Minutes><Note>Asset &amp; register</Note><Billable>true</Billable>"
    b"<Start>09:00</Start><End>10:30</End><InvoiceTaskUUID /></Time>"
)


def _times(*entries: bytes) -> bytes:
    return b"<Response><Status>OK</Status><Times>" + b"".join(entries) + b"</Times></Response>"


def test_time_entry_is_typed():
    rows = parse_response(_times(TIME), "timesheet")["timesheet"]
    (row,) = rows.records()
    assert row["uuid"] == "f30c8127-b101-455c-882e-92d856bc5576"
    assert row["job_number"] == "J001042"
    assert row["task_uuid"] == "301e019f-c41e-45cf-aa2f-10569900b82c"
    assert row["staff_uuid"] == "d47b74e4-cc6c-41c5-b880-e60ac2f9e79c"
    assert row["entry_date"] == date(2026, 8, 14)
    assert row["minutes"] == -90
    assert row["note"] == "Asset & register"
    assert row["billable"] is True
    assert (row["start_time"], row["end_time"]) == ("09:00", "10:30")
    assert row["invoice_task_uuid"] is None


def test_client_yes_no_and_nested_contacts():
    doc = (
        b"<Response><Status>OK</Status><Clients><Client><UUID>362de1a5-b4a9-40e9-a7b5-6df4db2726cb</UUID>"
        b"<Name>Harbour Joinery Ltd</Name><Website /><IsArchived>No</IsArchived><IsDeleted>Yes</IsDeleted>"
        b"<Contacts><Contact><UUID>684de074-9c13-4d8d-9ad8-706b715e8cf2</UUID><Name>Tom Hale</Name>"
        b"<IsDeleted>No</IsDeleted><IsPrimary>Yes</IsPrimary><Position /></Contact></Contacts>"
        b"<Groups><Group><UUID>4067eb2b-19c5-4502-92bb-6c6b55093025</UUID><Name>Hale</Name></Group></Groups>"
        b"</Client></Clients></Response>"
    )
    parsed = parse_response(doc, "client")
    client = parsed["client"].records()[0]
    assert client["is_archived"] is False and client["is_deleted"] is True and client["website"] is None
    contact = parsed["client_contact"].records()[0]
    assert contact["client_uuid"] == client["uuid"]
    assert contact["is_primary"] is True and contact["position"] is None


def test_group_members_inherit_group_key():
    doc = (
        b"<Response><Status>OK</Status><Group><UUID>4067eb2b-19c5-4502-92bb-6c6b55093025</UUID><Name>Hale Family</Name>"
        b"<Taxable>No</Taxable><Clients><Client><UUID>362de1a5-b4a9-40e9-a7b5-6df4db2726cb</UUID><Name>A</Name>"
        b"</Client><Client><UUID>462de1a5-b4a9-40e9-a7b5-6df4db2726cb</UUID><Name>B</Name></Client></Clients>"
        b"</Group></Response>"
    )
    parsed = parse_response(doc, "client_group")
    assert parsed["client_group"].records()[0]["taxable"] is False
    members = parsed["client_group_member"].records()
    assert {m["group_uuid"] for m in members} == {"4067eb2b-19c5-4502-92bb-6c6b55093025"}
    assert len(members) == 2


def test_money_and_missing_optional_blocks():
    doc = (
        b"<Response><Status>OK</Status><Jobs><Job><ID>CUSTOM-7</ID><UUID>ba5f61da-bded-4e50-8e30-c0e565e91a5e</UUID>"
        b"<Name>X</Name><Budget>1800.50</Budget><StartDate>2026-07-01T00:00:00</StartDate></Job></Jobs></Response>"
    )
    job = parse_response(doc, "job")["job"].records()[0]
    assert job["job_number"] == "CUSTOM-7"
    assert job["budget"] == Decimal("1800.50")
    assert job["completed_date"] is None and job["manager_uuid"] is None


def test_status_error_carries_xpm_message():
    doc = b"<Response><Status>ERROR</Status><ErrorDescription>Unable to find job J009999</ErrorDescription></Response>"
    with pytest.raises(ResponseStatusError, match="Unable to find job J009999"):
        parse_response(doc, "job")


def test_streams_in_small_chunks():
    doc = _times(*[TIME.replace(b"F30C8127", b"%08x" % i) for i in range(50)])
    chunks = [doc[i : i + 7] for i in range(0, len(doc), 7)]
    assert len(parse_response(chunks, "timesheet")["timesheet"]) == 50


@pytest.mark.parametrize(
    "doc, message",
    [
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><Response/>', "DOCTYPE"),
        (
            b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b"<Response><Status>&lol2;</Status></Response>",
            "DOCTYPE",
        ),
        (b'<!DOCTYPE r SYSTEM "http://127.0.0.1:1/evil.dtd"><Response/>', "DOCTYPE"),
        (b"\xef\xbb\xbf<!doctype r><Response/>", "DOCTYPE"),
        (b"<Response><Status>OK</Status><Times><Time><UUID>x", "malformed"),
        (b"<Response><Status>OK</Status><Times></Time></Response>", "malformed"),
        (b"not xml at all", "malformed"),
        (b"<Other><Status>OK</Status></Other>", "Response"),
        (b"<Response><Times/></Response>", "no <Status>"),
        (b"<Response><Status>OK</Status><Times>\xff\xfe</Times></Response>", "malformed"),
        (b"<!--" + b" " * 70_000 + b"--><!DOCTYPE r><Response/>", "prolog"),
    ],
)
def test_hostile_or_broken_documents_are_refused(doc, message):
    chunks = [doc[i : i + 4096] for i in range(0, len(doc), 4096)]
    with pytest.raises(XPMParseError, match=message):
        parse_response(chunks, "timesheet")


def test_size_cap():
    doc = _times(*[TIME] * 200)
    with pytest.raises(XPMParseError, match="cap"):
        parse_response([doc[i : i + 1000] for i in range(0, len(doc), 1000)], "timesheet", max_bytes=10_000)


def test_bad_values_name_the_field():
    bad = TIME.replace(b"<Minutes>-90</Minutes>", b"<Minutes>ninety</Minutes>")
    with pytest.raises(XPMParseError, match="Time/Minutes"):
        parse_response(_times(bad), "timesheet")
    bad = TIME.replace(b"<Billable>true</Billable>", b"<Billable>maybe</Billable>")
    with pytest.raises(XPMParseError, match="Billable"):
        parse_response(_times(bad), "timesheet")


def test_required_field_missing_is_an_error():
    bad = TIME.replace(b"<Date>2026-08-14T00:00:00</Date>", b"")
    with pytest.raises(XPMParseError, match="without Date"):
        parse_response(_times(bad), "timesheet")


def test_every_entity_plan_compiles():
    for entity in ENTITIES.values():
        assert parse_response(b"<Response><Status>OK</Status></Response>", entity).rows[entity.name] is not None


def _many(count: int) -> bytes:
    return _times(*[TIME.replace(b"F30C8127", b"%08x" % i).replace(b"-90", str(i).encode()) for i in range(count)])


def test_batched_path_matches_general_path_on_multi_megabyte_lists():
    doc = _many(8000)  # ~3.7 MB: several batches
    assert len(doc) > 3 * (1 << 20)
    chunks = [doc[i : i + 65536] for i in range(0, len(doc), 65536)]
    fast = parse_response(chunks, "timesheet")["timesheet"]
    # A comment anywhere sends the rest of the document down the general (iterparse) path.
    split = doc.index(b"<Time>", len(doc) // 2)
    mixed = doc[:split] + b"<!-- </Time> inside a comment -->" + doc[split:]
    general = parse_response([mixed[i : i + 65536] for i in range(0, len(mixed), 65536)], "timesheet")["timesheet"]
    assert len(fast) == len(general) == 8000
    assert fast.records() == general.records()
    assert fast.column("minutes")[:3] == [0, 1, 2]


def test_cdata_is_parsed_correctly():
    cdata = _times(TIME.replace(b"<Note>Asset &amp; register</Note>", b"<Note><![CDATA[a </Time> b]]></Note>"))
    assert parse_response(cdata, "timesheet")["timesheet"].column("note") == ["a </Time> b"]


# A document whose DOCTYPE declares an entity that reads a file: in any encoding but UTF-8 the bytes
# "<!DOCTYPE" are not there for the byte-level refusal to find.
_DOCTYPED = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>' + _times(
    TIME.replace(b"Asset &amp; register", b"&x;")).decode()
_UTF7_DOCTYPE = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x SYSTEM +ACI-file:///etc/hostname+ACI-+AD4-+AF0-+AD4-' + _times(TIME)


def _declared(encoding: str) -> str:
    return f'<?xml version="1.0" encoding="{encoding}"?>' + _DOCTYPED


@pytest.mark.parametrize(
    "doc, named",
    [
        (("\ufeff" + _declared("UTF-16")).encode("utf-16-le"), "UTF-16LE"),
        (("\ufeff" + _declared("UTF-16")).encode("utf-16-be"), "UTF-16BE"),
        (_declared("UTF-16").encode("utf-16-le"), "UTF-16LE"),
        (_declared("UTF-16").encode("utf-16-be"), "UTF-16BE"),
        (_DOCTYPED.encode("utf-16-le"), "UTF-16LE"),  # no BOM, no declaration
        (("\ufeff" + _declared("UTF-32")).encode("utf-32-le"), "UTF-32LE"),
        (("\ufeff" + _declared("UTF-32")).encode("utf-32-be"), "UTF-32BE"),
        (_declared("UTF-32").encode("utf-32-le"), "UTF-32LE"),
        (_declared("UTF-32").encode("utf-32-be"), "UTF-32BE"),
        (_declared("ISO-8859-1").encode("latin-1"), "ISO-8859-1"),
        (_declared("windows-1252").encode("cp1252"), "windows-1252"),
        (_UTF7_DOCTYPE, "UTF-7"),
        (b"+/v8-" + _UTF7_DOCTYPE, "UTF-7"),
        (_declared("IBM037").encode("cp037"), "EBCDIC"),
        (b"\xef\xbb\xbf" + _declared("UTF-16").encode(), "UTF-16"),  # a UTF-8 BOM, then another name
        (b"\n  " + _declared("latin1").encode(), "latin1"),
    ],
    ids=["utf16le-bom", "utf16be-bom", "utf16le", "utf16be", "utf16le-bare", "utf32le-bom", "utf32be-bom", "utf32le",
         "utf32be", "iso-8859-1", "windows-1252", "utf7", "utf7-bom", "ebcdic", "utf8-bom-declaring-utf16",
         "after-whitespace"],
)
@pytest.mark.parametrize("chunk", [1 << 16, 1], ids=["whole", "1-byte-chunks"])
def test_an_answer_not_in_utf8_is_refused_before_parsing_naming_its_encoding(doc, named, chunk):
    with pytest.raises(XPMParseError) as caught:
        parse_response([doc[i : i + chunk] for i in range(0, len(doc), chunk)], "timesheet")
    message = str(caught.value)
    assert message.startswith("refused an XML document in ") and named in message, message
    assert "UTF-8" in message and len(message.splitlines()) == 1 and len(message) < 200, message


@pytest.mark.parametrize("declaration", [b"", b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="utf-8"?>',
                                         b"<?xml version='1.0' encoding='UTF8'?>", b'<?xml version="1.0" encoding="US-ASCII"?>',
                                         b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'])
def test_utf8_answers_with_or_without_a_declaration_still_parse(declaration):
    assert len(parse_response(declaration + _times(TIME), "timesheet")["timesheet"]) == 1


def test_truncation_anywhere_in_a_big_list_is_refused():
    doc = _many(3000)
    for cut in (len(doc) - 5, len(doc) // 2, len(doc) - len(b"</Times></Response>")):
        with pytest.raises(XPMParseError, match="malformed"):
            parse_response([doc[:cut]], "timesheet")
