"""Contract of the sandbox's ServiceNow (tests/sandbox/servicenow.py, README "ServiceNow"): what the
servicenow_incident module relies on, pinned as the ServiceNow Table API and Attachment API documentation describe
it (encoded queries, sysparm_* parameters, paging with Link and X-Total-Count, the error body, journal fields, the
close-info data policy, OAuth tokens, 429 with Retry-After)."""

import hashlib
import urllib.parse

import pytest
import requests

from sandbox import credentials

BASIC = (credentials.SERVICENOW_USER, credentials.SERVICENOW_PASSWORD)


def url(sandbox, path):
    return sandbox.url + credentials.SERVICENOW_PREFIX + path


def call(sandbox, method, path, auth=BASIC, **kwargs):
    headers = kwargs.pop("headers", {})
    headers.setdefault("Accept", "application/json")
    return requests.request(method, url(sandbox, path), auth=auth, headers=headers, timeout=10, **kwargs)


def create(sandbox, **fields):
    response = call(sandbox, "POST", "/api/now/table/incident", json=dict({"short_description": "x"}, **fields))
    assert response.status_code == 201, response.text
    return response.json()["result"]


def failure(response):
    body = response.json()
    assert body["status"] == "failure" and set(body["error"]) == {"message", "detail"}
    return body["error"]


def test_authentication_basic_bearer_and_the_error_body(sandbox):
    assert failure(call(sandbox, "GET", "/api/now/table/incident", auth=None)) == {
        "message": "User Not Authenticated", "detail": "Required to provide Auth information"}
    wrong = call(sandbox, "GET", "/api/now/table/incident", auth=(credentials.SERVICENOW_USER, "wrong"))
    assert wrong.status_code == 401 and failure(wrong)["message"] == "User Not Authenticated"
    assert call(sandbox, "GET", "/api/now/table/incident").status_code == 200
    # OAuth: password grant and client credentials at /oauth_token.do, form-encoded.
    form = {"grant_type": "password", "client_id": credentials.SERVICENOW_CLIENT_ID,
            "client_secret": credentials.SERVICENOW_CLIENT_SECRET, "username": credentials.SERVICENOW_USER,
            "password": credentials.SERVICENOW_PASSWORD}
    token = requests.post(url(sandbox, "/oauth_token.do"), data=form, timeout=10).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0 and token["refresh_token"]
    bearer = {"Authorization": "Bearer " + token["access_token"]}
    assert call(sandbox, "GET", "/api/now/table/incident", auth=None, headers=bearer).status_code == 200
    refreshed = requests.post(url(sandbox, "/oauth_token.do"), data={
        "grant_type": "refresh_token", "client_id": credentials.SERVICENOW_CLIENT_ID,
        "client_secret": credentials.SERVICENOW_CLIENT_SECRET, "refresh_token": token["refresh_token"]}, timeout=10)
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != token["access_token"]
    bad_client = requests.post(url(sandbox, "/oauth_token.do"), data=dict(form, client_secret="nope"), timeout=10)
    assert bad_client.status_code == 401 and bad_client.json() == {"error_description": "access_denied", "error": "server_error"}
    # A revoked (or expired) token is refused like no credentials at all.
    sandbox.call("POST", "/_sandbox/servicenow/config", {"revoke_tokens": True})
    assert call(sandbox, "GET", "/api/now/table/incident", auth=None, headers=bearer).status_code == 401


def test_acl_a_user_without_itil_reads_nothing_and_cannot_write(sandbox):
    create(sandbox)
    norole = (credentials.SERVICENOW_NOROLE_USER, credentials.SERVICENOW_NOROLE_PASSWORD)
    listed = call(sandbox, "GET", "/api/now/table/incident", auth=norole)
    assert listed.status_code == 200 and listed.json() == {"result": []}
    refused = call(sandbox, "POST", "/api/now/table/incident", auth=norole, json={"short_description": "x"})
    assert refused.status_code == 403 and failure(refused) == {
        "message": "Operation Failed", "detail": "ACL Exception Insert Failed due to security constraints"}


def test_create_numbers_priority_and_display_values(sandbox):
    group = call(sandbox, "GET", "/api/now/table/sys_user_group", params={"sysparm_query": "name=Database"}).json()["result"][0]
    response = call(sandbox, "POST", "/api/now/table/incident", params={"sysparm_display_value": "all",
                    "sysparm_exclude_reference_link": "true"},
                    json={"short_description": "Disk full", "urgency": "1", "impact": "2", "assignment_group": group["sys_id"],
                          "correlation_id": "dt-P-1", "no_such_field": "ignored"})
    assert response.status_code == 201
    record = response.json()["result"]
    assert response.headers["Location"].endswith("/api/now/table/incident/" + record["sys_id"]["value"])
    assert record["number"] == {"display_value": "INC0010001", "value": "INC0010001"}
    assert record["priority"] == {"display_value": "2 - High", "value": "2"}  # the priority lookup of urgency 1, impact 2
    assert record["state"] == {"display_value": "New", "value": "1"}
    assert record["assignment_group"] == {"display_value": "Database", "value": group["sys_id"]}
    assert "no_such_field" not in record
    plain = call(sandbox, "GET", "/api/now/table/incident/" + record["sys_id"]["value"],
                 params={"sysparm_fields": "number,assignment_group,urgency"}).json()["result"]
    assert plain["number"] == "INC0010001"
    assert plain["urgency"] == "1" and plain["assignment_group"]["value"] == group["sys_id"]
    assert plain["assignment_group"]["link"].endswith("/api/now/table/sys_user_group/" + group["sys_id"])
    assert set(plain) == {"number", "assignment_group", "urgency"}
    shown = call(sandbox, "GET", "/api/now/v2/table/incident/" + record["sys_id"]["value"],
                 params={"sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"}).json()["result"]
    assert shown["assignment_group"] == "Database" and shown["urgency"] == "1 - High"


@pytest.mark.parametrize("query, expected", [
    ("correlation_id=dt-P-2", ["b"]),
    ("correlation_id=DT-P-2", ["b"]),                                    # '=' compares case-insensitively
    ("urgency=1^impact=1", ["a"]),
    ("urgency=1^ORurgency=2^impact=1", ["a", "c"]),                       # ^OR binds tighter than ^
    ("short_descriptionLIKEdisk", ["a", "b"]),
    ("short_descriptionSTARTSWITHcpu", ["c"]),
    ("correlation_idINdt-P-1,dt-P-3", ["a", "c"]),
    ("correlation_idNOT INdt-P-1,dt-P-3", ["b", "d"]),
    ("descriptionISEMPTY", ["b", "c"]),
    ("short_description=a^^b", ["d"]),                                    # '^^' is a literal '^'
    ("no_such_field=1", []),                                              # an invalid condition selects nothing
    ("impact=1^ORDERBYDESCshort_description", ["a", "b", "c"]),
    ("ORDERBYshort_description", ["d", "c", "b", "a"]),          # case-insensitive, as the database collates
])
def test_encoded_query_operators(sandbox, query, expected):
    names = {}
    names["a"] = create(sandbox, short_description="Disk full on web-01", urgency="1", impact="1", correlation_id="dt-P-1",
                        description="root cause")["sys_id"]
    names["b"] = create(sandbox, short_description="Disk full on db-01", urgency="3", impact="1", correlation_id="dt-P-2")["sys_id"]
    names["c"] = create(sandbox, short_description="CPU saturation", urgency="2", impact="1", correlation_id="dt-P-3")["sys_id"]
    names["d"] = create(sandbox, short_description="a^b", urgency="3", impact="3", correlation_id="dt-P-4",
                        description="x")["sys_id"]
    found = call(sandbox, "GET", "/api/now/table/incident", params={"sysparm_query": query, "sysparm_fields": "sys_id"}).json()
    by_id = dict((v, k) for k, v in names.items())
    got = [by_id[r["sys_id"]] for r in found["result"]]
    assert got == expected if "ORDERBY" in query else sorted(got) == expected


def test_paging_with_offset_link_and_total_count(sandbox):
    for number in range(25):
        create(sandbox, short_description="incident %02d" % number, correlation_id="bulk")
    seen, pages = [], 0
    response = call(sandbox, "GET", "/api/now/table/incident", params={
        "sysparm_query": "correlation_id=bulk^ORDERBYshort_description", "sysparm_limit": "10", "sysparm_fields": "short_description"})
    while True:
        assert response.status_code == 200 and response.headers["X-Total-Count"] == "25"
        seen += [r["short_description"] for r in response.json()["result"]]
        pages += 1
        links = requests.utils.parse_header_links(response.headers["Link"])
        rels = dict((link["rel"], link["url"]) for link in links)
        assert "first" in rels and "last" in rels
        if "next" not in rels:
            break
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(rels["next"]).query)
        assert query["sysparm_query"] == ["correlation_id=bulk^ORDERBYshort_description"]  # the query is kept
        response = requests.get(rels["next"], auth=BASIC, timeout=10)
    assert pages == 3 and seen == ["incident %02d" % n for n in range(25)]
    negative = call(sandbox, "GET", "/api/now/table/incident", params={"sysparm_offset": "-9"})
    assert negative.status_code == 400 and failure(negative) == {"message": "offset is -9",
                                                                 "detail": "Negative offset is not supported"}


def test_journal_fields_are_write_only_values_read_back_as_display_values(sandbox):
    sys_id = create(sandbox, work_notes="first note")["sys_id"]
    patched = call(sandbox, "PATCH", "/api/now/table/incident/" + sys_id, params={"sysparm_display_value": "all"},
                   json={"work_notes": "second note", "comments": "visible to the caller"})
    assert patched.status_code == 200
    record = patched.json()["result"]
    notes = record["work_notes"]
    assert notes["value"] == "" and notes["display_value"].index("second note") < notes["display_value"].index("first note")
    assert "Selfheal Integration (Work notes)\nsecond note\n\n" in notes["display_value"]
    assert "(Additional comments)\nvisible to the caller" in record["comments"]["display_value"]
    assert call(sandbox, "GET", "/api/now/table/incident/" + sys_id).json()["result"]["work_notes"] == ""
    sandbox.call("POST", "/_sandbox/servicenow/journal", {"sys_id": sys_id, "user": "abel.tuter", "text": "any news?"})
    again = call(sandbox, "GET", "/api/now/table/incident/" + sys_id, params={"sysparm_display_value": "true"}).json()
    assert "Abel Tuter (Additional comments)\nany news?" in again["result"]["comments"]


def test_resolving_needs_close_code_and_notes(sandbox):
    sys_id = create(sandbox)["sys_id"]
    refused = call(sandbox, "PATCH", "/api/now/table/incident/" + sys_id, json={"state": "6"})
    assert refused.status_code == 403
    error = failure(refused)
    assert error["message"] == "Operation Failed" and "Data Policy Exception" in error["detail"]
    assert "Resolution code, Resolution notes" in error["detail"]
    resolved = call(sandbox, "PATCH", "/api/now/table/incident/" + sys_id,
                    json={"state": "6", "close_code": "Solution provided", "close_notes": "fixed"}).json()["result"]
    assert resolved["state"] == "6" and resolved["resolved_at"] and resolved["active"] == "false"
    closed = call(sandbox, "PUT", "/api/now/table/incident/" + sys_id, json={"state": "7"}).json()["result"]
    assert closed["state"] == "7" and closed["closed_at"] and closed["resolved_at"] == resolved["resolved_at"]


def test_attachments_upload_list_download(sandbox):
    sys_id = create(sandbox)["sys_id"]
    content = b"10:01 oncall: restarting\n" * 40
    upload = call(sandbox, "POST", "/api/now/attachment/file", data=content, headers={"Content-Type": "text/markdown"},
                  params={"table_name": "incident", "table_sys_id": sys_id, "file_name": "teams.md"})
    assert upload.status_code == 201
    meta = upload.json()["result"]
    assert meta["file_name"] == "teams.md" and meta["size_bytes"] == str(len(content))
    assert meta["hash"] == hashlib.sha256(content).hexdigest() and meta["content_type"] == "text/markdown"
    assert upload.headers["Location"].endswith("/api/now/attachment/" + meta["sys_id"])
    listed = call(sandbox, "GET", "/api/now/attachment", params={
        "sysparm_query": "table_name=incident^table_sys_id=%s" % sys_id}).json()["result"]
    assert [a["file_name"] for a in listed] == ["teams.md"]
    assert requests.get(meta["download_link"], auth=BASIC, timeout=10).content == content
    missing = call(sandbox, "POST", "/api/now/attachment/file", data=b"x", headers={"Content-Type": "text/plain"},
                   params={"table_name": "incident", "file_name": "x"})
    assert missing.status_code == 400 and failure(missing)["message"] == "Missing parameter: table_sys_id"
    unknown = call(sandbox, "POST", "/api/now/attachment/file", data=b"x", headers={"Content-Type": "text/plain"},
                   params={"table_name": "incident", "table_sys_id": "0" * 32, "file_name": "x"})
    assert unknown.status_code == 404


def test_errors_invalid_table_missing_record_bad_json(sandbox):
    assert failure(call(sandbox, "GET", "/api/now/table/incidentx")) == {"message": "Invalid table incidentx", "detail": None}
    missing = call(sandbox, "GET", "/api/now/table/incident/" + "0" * 32)
    assert missing.status_code == 404 and failure(missing) == {
        "message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"}
    bad = call(sandbox, "POST", "/api/now/table/incident", data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and failure(bad)["detail"] == "The payload is not valid JSON."


def test_rate_limit_answers_429_with_retry_after_and_faults_work(sandbox):
    sandbox.call("POST", "/_sandbox/servicenow/config", {"rate_limit": 3, "window": 30})
    statuses = [call(sandbox, "GET", "/api/now/table/incident").status_code for dummy in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = call(sandbox, "GET", "/api/now/table/incident")
    assert 1 <= int(limited.headers["Retry-After"]) <= 30 and limited.headers["X-RateLimit-Limit"] == "3"
    assert failure(limited)["message"] == "Rate limit exceeded"
    sandbox.call("POST", "/_sandbox/servicenow/config", {"rate_limit": 0})
    sandbox.fault(credentials.SERVICENOW_PREFIX + "/api/now/table/incident", status=503,
                  body={"error": {"message": "Service Unavailable", "detail": None}, "status": "failure"})
    assert call(sandbox, "GET", "/api/now/table/incident").status_code == 503
    assert call(sandbox, "GET", "/api/now/table/incident").status_code == 200
    logged = sandbox.requests(credentials.SERVICENOW_PREFIX + "/api/now/table/incident")
    assert [e["status"] for e in logged][-2:] == [503, 200]


def test_watch_page_rows_for_incidents(sandbox):
    from sandbox import servicenow as sandbox_servicenow

    sys_id = create(sandbox, short_description="Disk full", work_notes="restarting")["sys_id"]
    call(sandbox, "POST", "/api/now/attachment/file", data=b"12345", headers={"Content-Type": "text/plain"},
         params={"table_name": "incident", "table_sys_id": sys_id, "file_name": "t.md"})
    [row] = sandbox_servicenow.watch_tickets(sandbox.state())
    assert row == {"instance": "ServiceNow", "key": "INC0010001", "summary": "Disk full", "status": "New",
                   "comments": ["Selfheal Integration (Work notes): restarting"],
                   "attachments": [{"filename": "t.md", "size": 5}]}
