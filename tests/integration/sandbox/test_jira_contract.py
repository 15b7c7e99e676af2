"""Contract of the sandbox's Jira Cloud (v3/v2), Jira Data Center (v2) and JSM service (see tests/sandbox/README.md),
and the proof that the unmodified `jira` PyPI client works against both mounts."""

import hashlib
import io

import jira as sdk  # the vendor's client from PyPI, unmodified
import pytest
import requests

from sandbox import credentials

CLOUD_AUTH = (credentials.JIRA_USER, credentials.JIRA_TOKEN)
DC_HEADERS = {"Authorization": "Bearer " + credentials.JIRA_PAT}
ADF = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Opened by Ansible"}]}]}


class Api(object):
    """requests bound to one mount and API version of the sandbox's Jira."""

    def __init__(self, sandbox, prefix, version, auth=None, headers=None):
        self.site = sandbox.url + prefix
        self.base = "%s/rest/api/%s" % (self.site, version)
        self.auth = auth
        self.headers = headers or {}

    def call(self, method, path, base=None, **kwargs):
        kwargs.setdefault("auth", self.auth)
        kwargs["headers"] = dict(self.headers, **kwargs.get("headers", {}))
        return requests.request(method, (base or self.base) + path, timeout=10, **kwargs)

    def create(self, summary="Disk full", labels=(), description=None, **fields):
        body = {"fields": dict({"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": summary,
                                "labels": list(labels)}, **fields)}
        if description is not None:
            body["fields"]["description"] = description
        response = self.call("POST", "/issue", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def desk(self, method, path, **kwargs):
        return self.call(method, path, base=self.site + "/rest/servicedeskapi", **kwargs)


@pytest.fixture
def v3(sandbox):
    return Api(sandbox, credentials.JIRA_PREFIX, "3", auth=CLOUD_AUTH)


@pytest.fixture
def v2(sandbox):
    return Api(sandbox, credentials.JIRA_PREFIX, "2", auth=CLOUD_AUTH)


@pytest.fixture
def dc(sandbox):
    return Api(sandbox, credentials.JIRA_DC_PREFIX, "2", headers=DC_HEADERS)


# --- authentication and metadata ------------------------------------------------------------------------------

def test_credentials_per_mount_and_401_with_an_error_collection(sandbox, v3, dc):
    assert v3.call("GET", "/myself").json()["accountId"]
    assert dc.call("GET", "/myself").json()["name"] == "selfheal-automation"
    for api, kwargs in ((v3, {"auth": (credentials.JIRA_USER, "wrong")}), (v3, {"auth": None, "headers": DC_HEADERS}),
                        (dc, {"auth": CLOUD_AUTH, "headers": {"Authorization": ""}}), (dc, {"headers": {"Authorization": "Bearer nope"}})):
        response = api.call("GET", "/issue/OPS-1", **kwargs)
        assert response.status_code == 401
        assert response.json() == {"errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
                                   "errors": {}}
    assert requests.get(v3.base + "/serverInfo", timeout=10).json()["deploymentType"] == "Cloud"
    assert requests.get(dc.base + "/serverInfo", timeout=10).json()["deploymentType"] == "Server"
    assert requests.get(sandbox.url + "/jira-dc/rest/api/3/serverInfo", timeout=10).status_code == 404  # no v3 on DC


def test_metadata_the_clients_read(v3):
    fields = {f["id"]: f for f in v3.call("GET", "/field").json()}
    assert fields["customfield_10060"]["name"] == "Severity" and fields["customfield_10060"]["clauseNames"] == ["cf[10060]", "Severity"]
    assert fields["summary"]["custom"] is False
    project = v3.call("GET", "/project/OPS").json()
    assert [t["name"] for t in project["issueTypes"]][0] == "Incident"
    assert [c["name"] for c in project["components"]] == ["checkout", "payments", "database", "infrastructure"]
    assert [p["name"] for p in v3.call("GET", "/priority").json()] == ["Highest", "High", "Medium", "Low", "Lowest"]
    missing = v3.call("GET", "/project/NOPE")
    assert missing.status_code == 404 and missing.json()["errorMessages"] == ["No project could be found with key 'NOPE'."]
    meta = v3.call("GET", "/issue/createmeta/OPS/issuetypes/10004").json()
    assert {"summary", "customfield_10060"} <= {f["fieldId"] for f in meta["fields"]}


# --- create, read, edit ---------------------------------------------------------------------------------------

def test_create_validates_like_jira(v3, v2):
    response = v3.call("POST", "/issue", json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
                                                          "summary": "x", "description": "plain text"}})
    assert response.status_code == 400
    assert response.json() == {"errorMessages": [], "errors": {
        "description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"}}
    bad_adf = dict(ADF, content=[{"type": "paragraph", "content": [{"type": "text", "text": ""}]}])
    assert v3.call("POST", "/issue", json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
                                                      "summary": "x", "description": bad_adf}}).status_code == 400
    errors = v3.call("POST", "/issue", json={"fields": {}}).json()["errors"]
    assert errors == {"project": "project is required", "issuetype": "issue type is required",
                      "summary": "You must specify a summary of the issue."}
    errors = v3.call("POST", "/issue", json={"fields": {"project": {"key": "NOPE"}, "issuetype": {"name": "Incident"},
                                                        "summary": "x"}}).json()["errors"]
    assert errors == {"project": "Specify a valid project ID or key"}
    errors = v3.call("POST", "/issue", json={"fields": {
        "project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": "x", "priority": {"name": "Urgent"},
        "labels": ["has space"], "components": [{"name": "nope"}], "customfield_99999": "x",
        "customfield_10060": {"value": "Apocalyptic"}}}).json()["errors"]
    assert errors == {"issuetype": "Specify a valid issue type", "priority": "The priority selected is invalid.",
                      "labels": "The label 'has space' contains spaces which is invalid.",
                      "components": "Component name 'nope' is not valid",
                      "customfield_99999": "Field 'customfield_99999' cannot be set. It is not on the appropriate screen, or unknown.",
                      "customfield_10060": "Option value 'Apocalyptic' is not valid"}
    created = v2.create(description="Opened by *Ansible*")
    assert created["key"] == "OPS-1" and created["self"].endswith("/rest/api/2/issue/%s" % created["id"])
    assert v2.call("POST", "/issue", json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
                                                      "summary": "x", "description": ADF}}).status_code == 400


def test_issue_fields_in_both_versions_and_edit(v3, v2):
    created = v3.create(labels=["dt-P-1"], description=ADF, priority={"name": "High"}, components=[{"name": "checkout"}],
                        customfield_10060={"value": "Major"}, customfield_10070=ADF, customfield_10080=["web-01"],
                        customfield_10090=12)
    fields = v3.call("GET", "/issue/" + created["key"]).json()["fields"]
    assert fields["description"] == ADF and fields["status"]["name"] == "Open"
    assert fields["status"]["statusCategory"]["key"] == "new" and fields["priority"]["name"] == "High"
    assert fields["labels"] == ["dt-P-1"] and [c["name"] for c in fields["components"]] == ["checkout"]
    assert fields["customfield_10060"]["value"] == "Major" and fields["customfield_10070"] == ADF
    assert fields["customfield_10080"] == ["web-01"] and fields["customfield_10090"] == 12
    assert fields["customfield_10050"] is None and fields["resolution"] is None
    assert fields["attachment"] == [] and fields["comment"] == {"comments": [], "self": fields["comment"]["self"],
                                                                "maxResults": 0, "total": 0, "startAt": 0}
    as_v2 = v2.call("GET", "/issue/" + created["id"], params={"fields": "description,customfield_10070,summary"}).json()
    assert as_v2["fields"] == {"description": "Opened by Ansible", "customfield_10070": "Opened by Ansible", "summary": "Disk full"}

    response = v3.call("PUT", "/issue/" + created["key"], json={"fields": {"summary": "Disk full on db-01"}, "update": {
        "labels": [{"add": "disk"}], "priority": [{"add": {"name": "Low"}}]}})
    assert response.status_code == 400 and response.json()["errors"] == {"priority": "Field 'priority' does not support operation 'add'"}
    assert v3.call("GET", "/issue/" + created["key"]).json()["fields"]["labels"] == ["dt-P-1"]  # nothing applied
    response = v3.call("PUT", "/issue/" + created["key"], json={"fields": {"summary": "Disk full on db-01"}, "update": {
        "labels": [{"add": "disk"}, {"remove": "dt-P-1"}], "components": [{"add": {"name": "database"}}]}})
    assert response.status_code == 204 and response.content == b""
    fields = v3.call("GET", "/issue/" + created["key"]).json()["fields"]
    assert fields["summary"] == "Disk full on db-01" and fields["labels"] == ["disk"]
    assert [c["name"] for c in fields["components"]] == ["checkout", "database"]
    assert v3.call("PUT", "/issue/" + created["key"], json={"fields": {"description": "no"}}).status_code == 400
    assert v3.call("PUT", "/issue/" + created["key"], json={"fields": {"status": {"name": "Closed"}}}).json()["errors"] == {
        "status": "Field 'status' cannot be set. It is not on the appropriate screen, or unknown."}
    missing = v3.call("GET", "/issue/OPS-999")
    assert missing.status_code == 404 and missing.json()["errorMessages"] == [
        "Issue does not exist or you do not have permission to see it."]


# --- search ---------------------------------------------------------------------------------------------------

def test_enhanced_search_bounded_jql_and_token_pagination(v3):
    for number in range(5):
        v3.create(summary="issue %d" % number, labels=["dt-P-7"] if number % 2 == 0 else ["other"])
    v3.create(summary="web", labels=["dt-P-7"], project={"key": "WEB"}, issuetype={"name": "Task"})
    page = v3.call("GET", "/search/jql", params={"jql": 'project = OPS AND labels = "dt-P-7" ORDER BY key ASC',
                                                 "maxResults": 2, "fields": "summary,status"}).json()
    assert [i["key"] for i in page["issues"]] == ["OPS-1", "OPS-3"] and "total" not in page
    assert page["isLast"] is False and page["issues"][0]["fields"] == {"summary": "issue 0", "status": page["issues"][0]["fields"]["status"]}
    last = v3.call("POST", "/search/jql", json={"jql": 'project = OPS AND labels = "dt-P-7" ORDER BY key ASC', "maxResults": 2,
                                                "nextPageToken": page["nextPageToken"]}).json()
    assert [i["key"] for i in last["issues"]] == ["OPS-5"] and last["isLast"] is True and "nextPageToken" not in last
    assert "fields" not in last["issues"][0]  # default fields: id only
    bad = v3.call("GET", "/search/jql", params={"jql": "project = OPS", "nextPageToken": "garbage"})
    assert bad.status_code == 400 and bad.json() == {"errorMessages": ["Invalid format of nextPageToken"], "errors": {}}
    for jql in ("", "order by key", "ORDER BY created DESC"):
        response = v3.call("GET", "/search/jql", params={"jql": jql})
        assert response.status_code == 400 and "Unbounded JQL" in response.json()["errorMessages"][0]

    def keys(jql):
        response = v3.call("GET", "/search/jql", params={"jql": jql, "fields": "key"})
        assert response.status_code == 200, response.text
        return [i["key"] for i in response.json()["issues"]]

    assert keys("key = OPS-2") == ["OPS-2"] and keys("issuekey in (OPS-2, WEB-1) ORDER BY key") == ["OPS-2", "WEB-1"]
    assert keys('labels = "dt-P-7"') == ["WEB-1", "OPS-5", "OPS-3", "OPS-1"]  # default order: created DESC
    assert keys("project = OPS AND status = Open AND labels != dt-P-7 ORDER BY created ASC") == ["OPS-2", "OPS-4"]
    assert keys('project = OPS AND (labels = other OR summary ~ "issue 4") ORDER BY key DESC') == ["OPS-5", "OPS-4", "OPS-2"]
    assert keys("project = OPS AND resolution = Unresolved AND statusCategory != Done AND labels is not EMPTY") != []
    for jql, message in (("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
                         ("key = OPS-99", "An issue with key 'OPS-99' does not exist for field 'key'."),
                         ('status = "Nope"', "The value 'Nope' does not exist for the field 'status'."),
                         ("frobnicate = 1", "Field 'frobnicate' does not exist or you do not have permission to view it."),
                         ("project = OPS AND", "Error in the JQL Query")):
        response = v3.call("GET", "/search/jql", params={"jql": jql})
        assert response.status_code == 400 and response.json()["errorMessages"][0].startswith(message), jql


def test_legacy_search_is_gone_on_cloud_and_the_dc_search(v3, v2, dc):
    for api in (v3, v2):
        response = api.call("GET", "/search", params={"jql": "project = OPS"})
        assert response.status_code == 410 and "CHANGE-2046" in response.json()["errorMessages"][0]
    for number in range(3):
        dc.create(summary="dc %d" % number, labels=["dt-P-8"])
    page = dc.call("POST", "/search", json={"jql": 'project = OPS AND labels = "dt-P-8" ORDER BY key', "startAt": 1,
                                            "maxResults": 1, "fields": ["summary", "status"]}).json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (1, 1, 3)
    assert [i["key"] for i in page["issues"]] == ["OPS-2"] and set(page["issues"][0]["fields"]) == {"summary", "status"}
    assert dc.call("GET", "/search", params={"jql": ""}).json()["total"] == 3  # Data Center accepts an empty query
    assert dc.call("GET", "/search/jql", params={"jql": "project = OPS"}).status_code == 404
    assert v3.call("GET", "/search/jql", params={"jql": "project = OPS"}).json()["issues"] == []  # separate instances


# --- comments ---------------------------------------------------------------------------------------------------

def test_comments_per_version_and_paging(v3, v2):
    key = v3.create()["key"]
    bad = v3.call("POST", "/issue/%s/comment" % key, json={"body": "plain"})
    assert bad.status_code == 400 and bad.json()["errors"] == {"comment": "Comment body is not valid!"}
    assert v3.call("POST", "/issue/%s/comment" % key, json={"body": ""}).json()["errors"] == {"comment": "Comment body can not be empty!"}
    created = v3.call("POST", "/issue/%s/comment" % key, json={"body": ADF})
    assert created.status_code == 201 and created.json()["body"] == ADF and created.json()["created"].endswith("+0000")
    assert v2.call("POST", "/issue/%s/comment" % key, json={"body": ADF}).status_code == 400
    for number in range(3):
        assert v2.call("POST", "/issue/%s/comment" % key, json={"body": "note %d" % number}).status_code == 201
    page = v2.call("GET", "/issue/%s/comment" % key, params={"startAt": 1, "maxResults": 2}).json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (1, 2, 4)
    assert [c["body"] for c in page["comments"]] == ["note 0", "note 1"]
    assert v2.call("GET", "/issue/%s/comment" % key).json()["comments"][0]["body"] == "Opened by Ansible"
    assert v3.call("GET", "/issue/%s/comment" % key).json()["comments"][1]["body"]["type"] == "doc"


def test_jsm_internal_comments_by_property_and_by_the_servicedesk_api(v3):
    key = v3.create()["key"]
    internal = v3.call("POST", "/issue/%s/comment" % key, json={
        "body": ADF, "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]}).json()
    assert internal["jsdPublic"] is False
    public = v3.desk("POST", "/request/%s/comment" % key, json={"body": "We are on it", "public": True})
    assert public.status_code == 201 and public.json()["public"] is True and public.json()["_links"]["self"]
    hidden = v3.desk("POST", "/request/%s/comment" % key, json={"body": "agents only", "public": False}).json()
    listed = v3.call("GET", "/issue/%s/comment" % key, params={"expand": "properties"}).json()["comments"]
    assert [c["jsdPublic"] for c in listed] == [False, True, False]
    assert listed[2]["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    page = v3.desk("GET", "/request/%s/comment" % key, params={"internal": "false"}).json()
    assert [c["body"] for c in page["values"]] == ["We are on it"] and page["isLastPage"] is True
    assert hidden["public"] is False
    web_key = v3.create(project={"key": "WEB"}, issuetype={"name": "Task"})["key"]
    assert "jsdPublic" not in v3.call("POST", "/issue/%s/comment" % web_key, json={"body": ADF}).json()
    assert v3.desk("POST", "/request/%s/comment" % web_key, json={"body": "x"}).status_code == 404


# --- transitions ------------------------------------------------------------------------------------------------

def test_workflow_transitions_by_id_with_resolution(sandbox, v3, v2):
    key = v3.create()["key"]
    listed = v3.call("GET", "/issue/%s/transitions" % key, params={"expand": "transitions.fields"}).json()["transitions"]
    assert [(t["id"], t["name"], t["to"]["name"]) for t in listed] == [
        ("11", "Start Progress", "In Progress"), ("21", "Resolve Issue", "Resolved"), ("31", "Close Issue", "Closed")]
    assert listed[1]["hasScreen"] and "resolution" in listed[1]["fields"] and listed[0]["fields"] == {}
    bad = v3.call("POST", "/issue/%s/transitions" % key, json={"transition": {"id": "41"}})
    assert bad.status_code == 400 and bad.json()["errorMessages"] == ["Transition id '41' is not valid for this issue."]
    screen = v3.call("POST", "/issue/%s/transitions" % key, json={"transition": {"id": "11"}, "fields": {"resolution": {"name": "Fixed"}}})
    assert screen.status_code == 400 and "resolution" in screen.json()["errors"]
    assert v3.call("POST", "/issue/%s/transitions" % key, json={"transition": {"id": "21"}, "update": {
        "comment": [{"add": {"body": "plain"}}]}}).status_code == 400  # v3 comment must be ADF
    done = v3.call("POST", "/issue/%s/transitions" % key, json={
        "transition": {"id": "21"}, "fields": {"resolution": {"name": "Fixed"}}, "update": {"comment": [{"add": {"body": ADF}}]}})
    assert done.status_code == 204 and done.content == b""
    fields = v3.call("GET", "/issue/" + key).json()["fields"]
    assert fields["status"]["name"] == "Resolved" and fields["resolution"]["name"] == "Fixed" and fields["resolutiondate"]
    assert fields["comment"]["total"] == 1
    with_unavailable = v3.call("GET", "/issue/%s/transitions" % key, params={"includeUnavailableTransitions": "true"}).json()
    assert {t["name"]: t["isAvailable"] for t in with_unavailable["transitions"]}["Resolve Issue"] is False
    assert v2.call("POST", "/issue/%s/transitions" % key, json={"transition": {"id": "41"}}).status_code == 204
    fields = v2.call("GET", "/issue/" + key).json()["fields"]
    assert fields["status"]["name"] == "Open" and fields["resolution"] is None
    assert v2.call("POST", "/issue/%s/transitions" % key, json={"transition": {"id": "31"}}).status_code == 204
    assert v2.call("GET", "/issue/" + key).json()["fields"]["resolution"]["name"] == "Done"  # workflow default
    stored = sandbox.state()["jira"]["cloud"]["issues"][key]["transitions"]
    assert [(t["from"], t["to"]) for t in stored] == [("Open", "Resolved"), ("Resolved", "Open"), ("Open", "Closed")]


def test_workflow_is_configurable(sandbox, dc):
    sandbox.call("POST", "/_sandbox/jira/dc/workflow", {
        "initial": "New", "statuses": [{"id": "1", "name": "New", "category": "new"}, {"id": "2", "name": "Done", "category": "done"}],
        "transitions": [{"id": "7", "name": "Finish", "from": ["New"], "to": "Done"}]})
    key = dc.create()["key"]
    assert [t["name"] for t in dc.call("GET", "/issue/%s/transitions" % key).json()["transitions"]] == ["Finish"]
    assert dc.call("POST", "/issue/%s/transitions" % key, json={"transition": {"id": "7"}}).status_code == 204
    assert dc.call("GET", "/issue/" + key).json()["fields"]["status"]["name"] == "Done"


# --- attachments ------------------------------------------------------------------------------------------------

def test_attachments_xsrf_multipart_limits_and_content(sandbox, v3):
    key = v3.create()["key"]
    files = [("file", ("transcript.txt", b"hello slack", "text/plain")), ("file", ("trace.bin", b"\x00\x01\x02", None)),
             ("comment", ("ignored.txt", b"not a file field"))]
    blocked = v3.call("POST", "/issue/%s/attachments" % key, files=files)
    assert blocked.status_code == 403 and blocked.text == "XSRF check failed"
    response = v3.call("POST", "/issue/%s/attachments" % key, files=files, headers={"X-Atlassian-Token": "no-check"})
    assert response.status_code == 200
    added = response.json()
    assert [(a["filename"], a["size"], a["mimeType"]) for a in added] == [
        ("transcript.txt", 11, "text/plain"), ("trace.bin", 3, "application/octet-stream")]
    assert v3.call("GET", "/attachment/content/" + added[0]["id"]).content == b"hello slack"
    assert requests.get(added[0]["content"], auth=CLOUD_AUTH, timeout=10).content == b"hello slack"
    stored = sandbox.state()["jira"]["cloud"]["issues"][key]["attachments"]
    assert stored[0]["sha256"] == hashlib.sha256(b"hello slack").hexdigest()
    admin = requests.get("%s/_sandbox/jira/cloud/attachments/%s" % (sandbox.url, added[1]["id"]), timeout=10)
    assert admin.content == b"\x00\x01\x02"
    fields = v3.call("GET", "/issue/" + key).json()["fields"]
    assert [a["filename"] for a in fields["attachment"]] == ["transcript.txt", "trace.bin"]
    too_many = [("file", ("f%d" % n, b"x")) for n in range(61)]
    response = v3.call("POST", "/issue/%s/attachments" % key, files=too_many, headers={"X-Atlassian-Token": "no-check"})
    assert response.status_code == 413 and len(v3.call("GET", "/issue/" + key).json()["fields"]["attachment"]) == 2
    sandbox.call("POST", "/_sandbox/jira/cloud/config", {"max_attachment_bytes": 4})
    response = v3.call("POST", "/issue/%s/attachments" % key, files=[("file", ("big", b"12345"))], headers={"X-Atlassian-Token": "no-check"})
    assert response.status_code == 413 and "too large" in response.json()["errorMessages"][0]
    response = v3.call("POST", "/issue/%s/attachments" % key, files=[("other", ("x", b"1"))], headers={"X-Atlassian-Token": "no-check"})
    assert response.status_code == 400


# --- JSM ---------------------------------------------------------------------------------------------------------

def test_jsm_customer_request(v3, dc):
    for api in (v3, dc):
        response = api.desk("POST", "/request", json={"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {
            "summary": "Checkout is slow", "description": "Raised by *selfheal*", "priority": {"name": "High"}}})
        assert response.status_code == 201, response.text
        request = response.json()
        assert request["issueKey"] == "OPS-1" and request["serviceDeskId"] == "10" and request["requestTypeId"] == "25"
        assert request["currentStatus"]["status"] == "Open" and request["createdDate"]["iso8601"]
        assert set(request["_links"]) == {"jiraRest", "web", "self", "agent"} and request["_links"]["agent"].endswith("/browse/OPS-1")
        assert request["requestFieldValues"][0] == {"fieldId": "summary", "label": "What happened?", "value": "Checkout is slow"}
        fields = api.call("GET", "/issue/OPS-1").json()["fields"]
        assert fields["issuetype"]["name"] == "Incident" and fields["priority"]["name"] == "High"
        assert fields["customfield_10010"]["requestType"]["id"] == "25"
        assert api.desk("GET", "/request/OPS-1").json()["issueKey"] == "OPS-1"
    for body, status, text in (({"serviceDeskId": "99", "requestTypeId": "25"}, 404, "service desk with ID '99'"),
                               ({"serviceDeskId": "10", "requestTypeId": "99", "requestFieldValues": {"summary": "x"}}, 400, "request type"),
                               ({"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {}}, 400, "summary is required"),
                               ({"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {"summary": "x", "labels": ["a"]}},
                                400, "'labels' is not on the request type")):
        response = v3.desk("POST", "/request", json=body)
        assert response.status_code == status and text in response.json()["errorMessage"]
    fields = v3.desk("GET", "/servicedesk/10/requesttype/25/field").json()["requestTypeFields"]
    assert [(f["fieldId"], f["required"]) for f in fields] == [("summary", True), ("description", False), ("priority", False)]


def test_rate_limit_fault_carries_jira_headers(sandbox, v3):
    sandbox.fault(credentials.JIRA_PREFIX + "/rest/api/3/myself", status=429, headers={
        "Retry-After": "2", "RateLimit-Reason": "jira-burst-based", "X-RateLimit-NearLimit": "true"},
        body={"errorMessages": ["Rate limit exceeded."], "errors": {}})
    limited = v3.call("GET", "/myself")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.headers["RateLimit-Reason"] == "jira-burst-based" and limited.json()["errorMessages"] == ["Rate limit exceeded."]
    assert v3.call("GET", "/myself").status_code == 200


# --- the vendor SDK, unmodified -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mount", ["cloud", "dc"])
def test_the_jira_python_client_works_unmodified(sandbox, mount):
    if mount == "cloud":
        client = sdk.JIRA(server=sandbox.url + credentials.JIRA_PREFIX, basic_auth=CLOUD_AUTH)
    else:
        client = sdk.JIRA(server=sandbox.url + credentials.JIRA_DC_PREFIX, token_auth=credentials.JIRA_PAT)
    assert client.deploymentType == ("Cloud" if mount == "cloud" else "Server")
    assert client.myself()["emailAddress"] == credentials.JIRA_USER

    issue = client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "SDK incident",
                                        "description": "Opened by *the SDK*", "labels": ["dt-P-42"],
                                        "priority": {"name": "High"}, "components": [{"name": "database"}]})
    assert issue.key == "OPS-1" and issue.fields.status.name == "Open" and issue.fields.priority.name == "High"
    other = client.create_issue(project="OPS", issuetype="Incident", summary="by project and type name")
    assert other.key == "OPS-2"

    found = client.search_issues('project = OPS AND labels = "dt-P-42"')
    assert [i.key for i in found] == ["OPS-1"] and found[0].fields.summary == "SDK incident"
    assert {i.key for i in client.search_issues("project = OPS ORDER BY key", maxResults=False)} == {"OPS-1", "OPS-2"}

    comment = client.add_comment(issue, "Restarted the database", is_internal=True)
    assert comment.body == "Restarted the database"
    assert [t["name"] for t in client.transitions(issue)] == ["Start Progress", "Resolve Issue", "Close Issue"]
    client.transition_issue(issue, "Resolve Issue", fields={"resolution": {"name": "Fixed"}}, comment="Fixed by selfheal")

    attachment = client.add_attachment(issue=issue.key, attachment=io.BytesIO(b"slack transcript"), filename="transcript.txt")
    assert attachment.filename == "transcript.txt" and attachment.size == 16
    assert attachment.get() == b"slack transcript"

    issue = client.issue(issue.key)
    assert issue.fields.status.name == "Resolved" and issue.fields.resolution.name == "Fixed"
    assert [c.body for c in client.comments(issue)] == ["Restarted the database", "Fixed by selfheal"]
    stored = sandbox.state()["jira"][mount]["issues"]["OPS-1"]
    assert stored["comments"][0]["internal"] is True and stored["attachments"][0]["size"] == 16

    paths = {entry["path"] for entry in sandbox.requests("/jira*")}
    prefix = credentials.JIRA_PREFIX if mount == "cloud" else credentials.JIRA_DC_PREFIX
    assert {prefix + "/rest/api/2/serverInfo", prefix + "/rest/api/2/field", prefix + "/rest/api/2/project/OPS"} <= paths
    assert (prefix + "/rest/api/2/search/jql" in paths) == (mount == "cloud")
    assert (prefix + "/rest/api/2/search" in paths) == (mount == "dc")


# --- added for the incident analytics (issue links, dates in JQL, paged search over many issues, downloads) ---------

def test_issue_links_problem_causes_incidents(v3, v2):
    types = v3.call("GET", "/issueLinkType").json()["issueLinkTypes"]
    problem_incident = [t for t in types if t["name"] == "Problem/Incident"][0]
    assert (problem_incident["outward"], problem_incident["inward"]) == ("causes", "is caused by")
    problem = v3.create(summary="Recurring crash", issuetype={"name": "Problem"})["key"]
    incident = v3.create()["key"]
    body = {"type": {"name": "Problem/Incident"}, "inwardIssue": {"key": problem}, "outwardIssue": {"key": incident}}
    created = v3.call("POST", "/issueLink", json=body)
    assert created.status_code == 201 and created.text == "" and "/issueLink/" in created.headers["Location"]
    assert v3.call("POST", "/issueLink", json=body).status_code == 201  # the same link is not added twice
    [on_problem] = v3.call("GET", "/issue/%s" % problem, params={"fields": "issuelinks"}).json()["fields"]["issuelinks"]
    [on_incident] = v2.call("GET", "/issue/%s" % incident, params={"fields": "issuelinks"}).json()["fields"]["issuelinks"]
    assert on_problem["outwardIssue"]["key"] == incident and on_problem["type"]["name"] == "Problem/Incident"
    assert on_incident["inwardIssue"]["key"] == problem and on_incident["id"] == on_problem["id"]
    link = v3.call("GET", "/issueLink/%s" % on_problem["id"]).json()
    assert (link["inwardIssue"]["key"], link["outwardIssue"]["key"]) == (problem, incident)
    unknown = v3.call("POST", "/issueLink", json=dict(body, type={"name": "Nope"}))
    assert unknown.status_code == 404 and unknown.json()["errorMessages"] == ["No issue link type with name 'Nope' found."]
    assert v3.call("POST", "/issueLink", json=dict(body, outwardIssue={"key": "OPS-999"})).status_code == 404
    assert v3.call("POST", "/issueLink", json=dict(body, outwardIssue={"key": problem})).status_code == 400
    assert v3.call("DELETE", "/issueLink/%s" % link["id"]).status_code == 204
    assert v3.call("GET", "/issue/%s" % problem, params={"fields": "issuelinks"}).json()["fields"]["issuelinks"] == []


def test_jql_date_clauses_absolute_and_relative(v3, dc):
    key = v3.create(labels=["dated"])["key"]
    assert [i["key"] for i in v3.call("GET", "/search/jql", params={"jql": "labels = dated AND created >= -1h", "fields": "key"}).json()["issues"]] == [key]
    assert v3.call("GET", "/search/jql", params={"jql": "labels = dated AND created < -1h"}).json()["issues"] == []
    between = 'labels = dated AND created >= "2020-01-01" AND created < "2100/01/01 00:00"'
    assert len(v3.call("GET", "/search/jql", params={"jql": between}).json()["issues"]) == 1
    assert v3.call("GET", "/search/jql", params={"jql": "labels = dated AND resolved is EMPTY"}).json()["issues"]
    bad = v3.call("GET", "/search/jql", params={"jql": 'labels = dated AND created >= "yesterday"'})
    assert bad.status_code == 400 and bad.json()["errorMessages"][0].startswith("Date value 'yesterday' for field 'created' is invalid.")
    assert dc.call("GET", "/search", params={"jql": "created >= -4w 2d"}).status_code == 400  # unquoted period with a space
    assert dc.call("GET", "/search", params={"jql": 'created >= "-4w 2d"'}).json()["total"] == 0  # DC is a separate instance


def test_enhanced_search_pages_over_a_seeded_history_and_downloads(sandbox, v3):
    seeded = sandbox.call("POST", "/_sandbox/history/seed", {"count": 250, "days": 30, "seed": 3})
    assert seeded["tickets"] == 250 and seeded["created"] == 250
    params = {"jql": "project = OPS AND labels = selfheal AND created >= -31d ORDER BY created ASC", "fields": "summary,attachment",
              "maxResults": "100"}
    keys, tokens = [], 0
    for dummy in range(10):
        page = v3.call("GET", "/search/jql", params=params).json()
        keys += [i["key"] for i in page["issues"]]
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        tokens += 1
        params["nextPageToken"] = page["nextPageToken"]
    assert tokens == 2 and len(keys) == len(set(keys)) == 250
    first = v3.call("GET", "/issue/%s" % keys[0], params={"fields": "attachment,created"}).json()["fields"]
    timeline = [a for a in first["attachment"] if a["filename"].endswith(".json")][0]
    content = requests.get(timeline["content"], auth=CLOUD_AUTH, timeout=10)
    assert content.status_code == 200 and content.json()["records"][0]["step"] == "remediation started"
    assert v3.call("GET", "/attachment/content/99999999").status_code == 404
    again = sandbox.call("POST", "/_sandbox/reset")
    assert again["ok"]
    sandbox.call("POST", "/_sandbox/history/seed", {"count": 5, "days": 30, "seed": 3, "end": 1796083200})
    once = sorted(i["fields"]["summary"] for i in sandbox.state()["jira"]["cloud"]["issues"].values())
    sandbox.call("POST", "/_sandbox/reset")
    sandbox.call("POST", "/_sandbox/history/seed", {"count": 5, "days": 30, "seed": 3, "end": 1796083200})
    assert sorted(i["fields"]["summary"] for i in sandbox.state()["jira"]["cloud"]["issues"].values()) == once  # deterministic


@pytest.mark.parametrize("query, bodies", [
    ({}, ["We are on it", "agents only"]),
    ({"public": "false"}, ["agents only"]),
    ({"public": "False"}, ["agents only"]),      # java.lang.Boolean.valueOf: only "true" (any case) is true
    ({"public": "yes"}, ["agents only"]),
    ({"internal": "TRUE"}, ["We are on it", "agents only"]),
    ({"internal": ""}, ["We are on it"]),
])
def test_jsm_boolean_query_parameters_read_as_jira_reads_them(v3, query, bodies):
    key = v3.create()["key"]
    v3.desk("POST", "/request/%s/comment" % key, json={"body": "We are on it", "public": True})
    v3.desk("POST", "/request/%s/comment" % key, json={"body": "agents only", "public": False})
    page = v3.desk("GET", "/request/%s/comment" % key, params=query).json()
    assert [c["body"] for c in page["values"]] == bodies
