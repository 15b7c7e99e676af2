"""Jira service layer: the text converter, markers, transition planning, field diffing, search pagination."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import jira
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse


def text(value, *marks):
    node = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def para(*nodes):
    return {"type": "paragraph", "content": list(nodes)}


def doc(*blocks):
    return {"type": "doc", "version": 1, "content": list(blocks)}


# --- converter: ADF -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("", doc()),
    ("Disk full on web-01", doc(para(text("Disk full on web-01")))),
    ("first line\nsecond line\n\nnext paragraph",
     doc(para(text("first line"), {"type": "hardBreak"}, text("second line")), para(text("next paragraph")))),
    ("## Impact", doc({"type": "heading", "attrs": {"level": 2}, "content": [text("Impact")]})),
    ("Restarted **checkout** now", doc(para(text("Restarted "), text("checkout", {"type": "strong"}), text(" now")))),
    ("see [the problem](https://dt.example/p/1)",
     doc(para(text("see "), text("the problem", {"type": "link", "attrs": {"href": "https://dt.example/p/1"}})))),
    ("at https://dt.example/p/1.", doc(para(text("at "), text("https://dt.example/p/1", {
        "type": "link", "attrs": {"href": "https://dt.example/p/1"}}), text(".")))),
    ("run `df -h` now", doc(para(text("run "), text("df -h", {"type": "code"}), text(" now")))),
    ("- one\n- **two**", doc({"type": "bulletList", "content": [
        {"type": "listItem", "content": [para(text("one"))]},
        {"type": "listItem", "content": [para(text("two", {"type": "strong"}))]}]})),
    ("3. three\n4. four", doc({"type": "orderedList", "attrs": {"order": 3}, "content": [
        {"type": "listItem", "content": [para(text("three"))]}, {"type": "listItem", "content": [para(text("four"))]}]})),
    ("```sh\ndf -h\n\ndu -s /tmp\n```",
     doc({"type": "codeBlock", "attrs": {"language": "sh"}, "content": [text("df -h\n\ndu -s /tmp")]})),
    ("```\n```", doc({"type": "codeBlock", "content": []})),
    ("---", doc({"type": "rule"})),
    ("> quoted\n> still", doc({"type": "blockquote", "content": [para(text("quoted"), {"type": "hardBreak"}, text("still"))]})),
])
def test_markdown_to_adf(source, expected):
    assert jira.markdown_to_adf(source) == expected


def test_nested_lists_and_continuations():
    result = jira.markdown_to_adf("- a\n  - a1\n  - a2\n- b\n  continued")
    outer = result["content"][0]
    assert outer["type"] == "bulletList" and len(outer["content"]) == 2
    first = outer["content"][0]["content"]
    assert first[0] == para(text("a")) and first[1]["type"] == "bulletList" and len(first[1]["content"]) == 2
    assert outer["content"][1]["content"][0] == para(text("b"), {"type": "hardBreak"}, text("continued"))


def test_code_mark_keeps_only_link():
    result = jira.markdown_to_adf("**[`x`](https://e.example)**")
    assert result["content"][0]["content"] == [text("x", {"type": "code"}, {"type": "link", "attrs": {"href": "https://e.example"}})]


def test_unclosed_fence_runs_to_the_end():
    assert jira.markdown_to_adf("```\nline")["content"] == [{"type": "codeBlock", "content": [text("line")]}]


def valid_adf(node, top=True):
    """The ADF rules Jira enforces that a converter can break: no empty text, link with href, heading level."""
    if top:
        assert node["type"] == "doc" and node["version"] == 1
    if node["type"] == "text":
        assert node["text"]
        for mark in node.get("marks", []):
            assert mark["type"] in ("strong", "code", "link", "textColor")
            if mark["type"] == "link":
                assert mark["attrs"]["href"]
    for child in node.get("content", []):
        valid_adf(child, top=False)


@pytest.mark.parametrize("source", ["**", "[]()", "` `", "``", "**bold** and `code` [x](y) https://a.b", "#", "- ", "1.",
                                    "\n\n\n", "text\n```", "> ", "****", "* * *"])
def test_adf_is_valid_for_odd_input(source):
    valid_adf(jira.markdown_to_adf(source))


# --- converter: wiki markup -----------------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("", ""),
    ("Disk full on web_01 (dt-P-1234)", "Disk full on web_01 (dt-P-1234)"),
    ("first\nsecond\n\nthird", "first\nsecond\n\nthird"),
    ("# Impact", "h1. Impact"),
    ("Restarted **checkout**", "Restarted *checkout*"),
    ("see [the problem](https://dt.example/p/1)", "see [the problem|https://dt.example/p/1]"),
    ("at https://dt.example/p/1", "at [https://dt.example/p/1]"),
    ("run `df -h`", "run {{df -h}}"),
    ("- one\n  - nested\n- two", "* one\n** nested\n* two"),
    ("1. one\n   - inner", "# one\n#* inner"),
    ("```python\nprint({'a': 1})\n```", "{code:python}\nprint({'a': 1})\n{code}"),
    ("```\nplain\n```", "{code}\nplain\n{code}"),
    ("---", "----"),
    ("> quoted", "{quote}\nquoted\n{quote}"),
    ("a {macro} [x] | pipe ! bang", "a \\{macro\\} \\[x\\] \\| pipe \\! bang"),
    ("*not a list: no space", "\\*not a list: no space"),
    ("5 * 3 - 1 and _x_ +y+", "5 \\* 3 \\- 1 and \\_x\\_ \\+y\\+"),
])
def test_markdown_to_wiki(source, expected):
    assert jira.markdown_to_wiki(source) == expected


def test_wiki_escapes_line_start_markers():
    assert jira.wiki_escape("#hashtag") == "\\#hashtag"
    assert jira.wiki_escape("h1. looks like a heading") == "\\h1. looks like a heading"


def test_render_picks_the_format_by_api_version():
    assert jira.render("x", "3") == doc(para(text("x")))
    assert jira.render("**x**", "2") == "*x*"


# --- reading rich text back -------------------------------------------------------------------------------------

def test_adf_to_text():
    value = jira.markdown_to_adf("# Title\n\nline\nbreak\n\n- a\n- b\n\n```\ncode\n```")
    assert jira.adf_to_text(value) == "Title\nline\nbreak\na\nb\ncode"
    assert jira.adf_to_text("wiki stays") == "wiki stays" and jira.adf_to_text(None) == ""


def test_same_rich_text_ignores_what_jira_adds():
    desired = jira.markdown_to_adf("1. a\n\n```\nx\n```")
    stored = doc({"type": "orderedList", "attrs": {"order": 1, "localId": "abc"}, "content": [
        {"type": "listItem", "attrs": {"localId": "def"}, "content": [para(text("a"))]}]},
        {"type": "codeBlock", "attrs": {"language": None}, "content": [text("x", *[])]})
    assert jira.same_rich_text(stored, desired)
    assert not jira.same_rich_text(doc(para(text("other"))), desired)
    assert not jira.same_rich_text("wiki", desired) and not jira.same_rich_text(desired, "wiki")
    assert jira.same_rich_text("text\n", "text") and not jira.same_rich_text(None, "text")


# --- comment marker -------------------------------------------------------------------------------------------

def test_marker_round_trip_in_both_formats():
    marker = jira.marker_id("Restarted checkout")
    assert marker == jira.marker_id("Restarted checkout") != jira.marker_id("Restarted checkout again")
    assert jira.marker_id("x", "dt-P-1 restart/1") == "dt-P-1-restart-1"
    adf = jira.comment_body("Restarted **checkout**", marker, "3")
    valid_adf(adf)
    assert adf["content"][-1]["content"][0]["marks"][0]["type"] == "textColor"
    assert jira.markers_in(adf) == {marker}
    wiki = jira.comment_body("Restarted **checkout**", marker, "2")
    assert wiki.startswith("Restarted *checkout*\n\n{color:") and jira.markers_in(wiki) == {marker}
    assert jira.markers_in(jira.comment_body("", marker, "2")) == {marker}
    assert jira.markers_in("no marker here") == set()


def test_jql_quote():
    assert jira.jql_quote('dt-P-1 "x" \\') == '"dt-P-1 \\"x\\" \\\\"'


# --- transitions ---------------------------------------------------------------------------------------------------

def tr(ident, name, to, category="done", available=True, fields=None):
    item = {"id": ident, "name": name, "to": {"name": to, "statusCategory": {"key": category}}, "isAvailable": available}
    if fields is not None:
        item["fields"] = fields
    return item


FROM_OPEN = [tr("11", "Start Progress", "In Progress", "indeterminate"), tr("21", "Resolve Issue", "Resolved"),
             tr("31", "Close Issue", "Closed")]
FROM_RESOLVED = [tr("31", "Close Issue", "Closed"), tr("41", "Reopen Issue", "Open", "new"),
                 tr("21", "Resolve Issue", "Resolved", available=False), tr("11", "Start Progress", "In Progress", "indeterminate", False)]


@pytest.mark.parametrize("kwargs, expected", [
    (dict(current="Open", status="In Progress"), "11"),
    (dict(current="open", status="Open"), None),
    (dict(current="Open", status="closed"), "31"),
    (dict(current="Open", transition="resolve issue"), "21"),
    (dict(current="Open", transition="Resolve Issue", status="Resolved"), "21"),
    (dict(current="Open", resolved=True, current_category="new"), "21"),
    (dict(current="Open", resolved=True, transition="Close Issue", current_category="new"), "31"),
    (dict(current="Closed", resolved=True, current_category="done"), None),
    (dict(current="Closed", resolved=True, transition="Resolve Issue", current_category="done"), None),
])
def test_plan_transition(kwargs, expected):
    transitions = FROM_RESOLVED if kwargs["current"] in ("Resolved", "Closed") else FROM_OPEN
    chosen = jira.plan_transition(transitions, **kwargs)
    assert (chosen["id"] if chosen else None) == expected


def test_transition_by_name_already_done_when_cloud_lists_it_unavailable():
    assert jira.plan_transition(FROM_RESOLVED, "Resolved", transition="Resolve Issue") is None


def test_resolved_prefers_a_status_named_resolved_or_done():
    transitions = [tr("31", "Close Issue", "Closed"), tr("21", "Finish", "Done")]
    assert jira.plan_transition(transitions, "Open", resolved=True, current_category="new")["id"] == "21"


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(current="Open", transition="Teleport"), ["'Teleport' does not exist", "set status",
                                                   "'Start Progress' (-> In Progress)", "'Close Issue' (-> Closed)"]),
    (dict(current="Resolved", transition="Start Progress"), ["not available from status 'Resolved'", "'Reopen Issue' (-> Open)"]),
    (dict(current="Open", status="Waiting"), ["No transition from status 'Open' leads to status 'Waiting'"]),
    (dict(current="Open", status="Resolved", transition="Close Issue"), ["leads to status 'Closed', not 'Resolved'"]),
    (dict(current="Open", resolved=True, transition="Start Progress", current_category="new"), ["does not resolve the issue"]),
])
def test_plan_transition_errors_list_the_available_transitions(kwargs, fragments):
    transitions = FROM_RESOLVED if kwargs["current"] == "Resolved" else FROM_OPEN
    with pytest.raises(InvalidInput) as caught:
        jira.plan_transition(transitions, **kwargs)
    for fragment in fragments:
        assert fragment in caught.value.message
    assert "'Resolve Issue'" not in caught.value.message or kwargs["current"] == "Open"


def test_no_resolving_transition_at_all():
    with pytest.raises(InvalidInput) as caught:
        jira.plan_transition([tr("11", "Start Progress", "In Progress", "indeterminate")], "Open", resolved=True,
                             current_category="new")
    assert "a resolved (done) status" in caught.value.message


# --- field diffing ----------------------------------------------------------------------------------------------

CURRENT = {
    "summary": "Disk full", "description": doc(para(text("old"))), "priority": {"id": "3", "name": "Medium"},
    "labels": ["dt-P-1", "human"], "components": [{"id": "1", "name": "checkout"}],
    "customfield_10060": {"self": "x", "value": "Major", "id": "10201"}, "customfield_10050": "dt-P-1",
    "customfield_10080": ["web-01", "web-02"], "customfield_10090": 3.0,
}


def test_no_change_when_everything_is_there():
    desired = {"summary": "Disk full", "description": doc(para(text("old"))), "priority": {"name": "Medium"},
               "labels": ["dt-P-1"], "components": ["checkout"], "customfield_10060": {"value": "Major"},
               "customfield_10050": "dt-P-1", "customfield_10080": ["web-02", "web-01"], "customfield_10090": 3}
    assert jira.plan_field_changes(CURRENT, desired) == ({}, {}, {})


def test_changes_carry_payload_and_readable_before_after():
    desired = {"summary": "Disk full on web-01", "description": jira.markdown_to_adf("new **text**"),
               "priority": {"name": "High"}, "labels": ["dt-P-1", "disk"], "components": ["database"],
               "customfield_10060": {"value": "Critical"}, "customfield_10090": 4}
    payload, before, after = jira.plan_field_changes(CURRENT, desired)
    assert payload == {"summary": "Disk full on web-01", "description": desired["description"], "priority": {"name": "High"},
                       "labels": ["dt-P-1", "human", "disk"], "components": [{"name": "checkout"}, {"name": "database"}],
                       "customfield_10060": {"value": "Critical"}, "customfield_10090": 4}
    assert before == {"summary": "Disk full", "description": "old", "priority": "Medium", "labels": ["dt-P-1", "human"],
                      "components": ["checkout"], "customfield_10060": "Major", "customfield_10090": 3.0}
    assert after == {"summary": "Disk full on web-01", "description": "new text", "priority": "High",
                     "labels": ["dt-P-1", "human", "disk"], "components": ["checkout", "database"],
                     "customfield_10060": "Critical", "customfield_10090": 4}


def test_wiki_description_compared_as_text_and_missing_fields_are_changes():
    payload, before, after = jira.plan_field_changes({"description": "h1. x", "priority": None},
                                                     {"description": "h1. x", "priority": {"name": "High"},
                                                      "customfield_10050": "k"})
    assert payload == {"priority": {"name": "High"}, "customfield_10050": "k"}
    assert before == {"priority": None, "customfield_10050": None}


@pytest.mark.parametrize("current, desired, expected", [
    ({"a": 1, "b": 2}, {"a": 1}, True), ({"a": 1}, {"a": 2}, False), (None, {"a": 1}, False),
    ([1, 2], [2, 1], True), ([1, 2, 3], [1, 2], False), (3.0, 3, True), (True, 1, False), ("x", "x", True),
])
def test_is_superset(current, desired, expected):
    assert jira.is_superset(current, desired) is expected


def test_issue_summary():
    fields = {"summary": "s", "status": {"name": "Open"}, "priority": {"name": "High"}, "labels": ["a"],
              "components": [{"name": "c"}], "resolution": None, "attachment": [{"filename": "f", "size": 3}]}
    issue = {"key": "OPS-1", "id": "10", "fields": fields}
    assert jira.issue_summary(issue, "u") == {"key": "OPS-1", "id": "10", "url": "u", "summary": "s", "status": "Open",
                                              "resolution": None, "priority": "High", "labels": ["a"], "components": ["c"],
                                              "attachments": [{"filename": "f", "size": 3}]}


def test_resolve_custom_fields_by_name_and_textarea_to_adf():
    fields = [{"id": "customfield_10060", "name": "Severity", "schema": {"custom": "x:select"}},
              {"id": "customfield_10070", "name": "Root cause",
               "schema": {"custom": "com.atlassian.jira.plugin.system.customfieldtypes:textarea"}},
              {"id": "customfield_1", "name": "Twin"}, {"id": "customfield_2", "name": "twin"}]
    resolved = jira.resolve_custom_fields({"severity": {"value": "Major"}, "customfield_10070": "**disk**"}, fields, "3")
    assert resolved == {"customfield_10060": {"value": "Major"}, "customfield_10070": jira.markdown_to_adf("**disk**")}
    assert jira.resolve_custom_fields({"Root cause": "**disk**"}, fields, "2") == {"customfield_10070": "*disk*"}
    for name, reason in (("Nope", "no field"), ("Twin", "2 fields")):
        with pytest.raises(InvalidInput) as caught:
            jira.resolve_custom_fields({name: 1}, fields, "3")
        assert reason in caught.value.message


# --- the service against a client double ---------------------------------------------------------------------------

class Answer(object):
    def __init__(self, body=None, status=200):
        self.json = body
        self.status = status


class FakeClient(object):
    base_url = "https://jira.example"

    def __init__(self, answers):
        self.answers = answers  # (method, path) -> list of bodies or exceptions, consumed in order
        self.calls = []

    def request(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        queue = self.answers[(method, path)]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return Answer(answer)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)


def test_enhanced_search_follows_next_page_token_until_is_last():
    client = FakeClient({("GET", "/rest/api/3/search/jql"): [
        {"issues": [{"key": "OPS-1"}], "nextPageToken": "t1", "isLast": False},
        {"issues": [{"key": "OPS-2"}], "isLast": True}]})
    found = jira.JiraService(client, "3").find_by_label('dt-"1', "OPS")
    assert [i["key"] for i in found] == ["OPS-1", "OPS-2"]
    first, second = (call[2]["params"] for call in client.calls)
    assert first["jql"] == 'project = "OPS" AND labels = "dt-\\"1" ORDER BY created ASC' and "nextPageToken" not in first
    assert second["nextPageToken"] == "t1" and second["jql"] == first["jql"] and second["fields"] == "key,created"


def test_legacy_search_pages_with_start_at_until_total():
    client = FakeClient({("GET", "/rest/api/2/search"): [
        {"startAt": 0, "total": 3, "issues": [{"key": "A-1"}, {"key": "A-2"}]},
        {"startAt": 2, "total": 3, "issues": [{"key": "A-3"}]}]})
    found = jira.JiraService(client, "2", "dc").search("labels = x")
    assert [i["key"] for i in found] == ["A-1", "A-2", "A-3"]
    assert [c[2]["params"]["startAt"] for c in client.calls] == ["0", "2"]


def test_search_switches_style_once_on_404_or_410():
    client = FakeClient({("GET", "/rest/api/2/search/jql"): [NotFound("no", status=404)],
                         ("GET", "/rest/api/2/search"): [{"total": 0, "issues": []}]})
    service = jira.JiraService(client, "2", "cloud")
    assert service.search("labels = x") == [] and service.deployment == "dc"
    client = FakeClient({("GET", "/rest/api/2/search"): [UnexpectedResponse("gone", status=410)],
                         ("GET", "/rest/api/2/search/jql"): [{"issues": [], "isLast": True}]})
    service = jira.JiraService(client, "2", "dc")
    assert service.search("labels = x") == [] and service.deployment == "cloud"
    client = FakeClient({("GET", "/rest/api/2/search"): [UnexpectedResponse("bad jql", status=400)]})
    with pytest.raises(UnexpectedResponse):
        jira.JiraService(client, "2", "dc").search("labels = x")


def test_search_stops_at_the_page_bound():
    client = FakeClient({("GET", "/rest/api/3/search/jql"): [{"issues": [{"key": "X"}], "nextPageToken": "again", "isLast": False}]})
    found = jira.JiraService(client, "3").search("project = X", limit=10 ** 6)
    assert len(found) == jira.MAX_SEARCH_PAGES and len(client.calls) == jira.MAX_SEARCH_PAGES


def test_comments_are_read_across_pages():
    client = FakeClient({("GET", "/rest/api/3/issue/OPS-1/comment"): [
        {"total": 101, "comments": [{"id": str(n)} for n in range(100)]}, {"total": 101, "comments": [{"id": "100"}]}]})
    assert len(jira.JiraService(client, "3").comments("OPS-1")) == 101
    assert [c[2]["params"]["startAt"] for c in client.calls] == ["0", "100"]


def test_writes_send_what_jira_expects():
    client = FakeClient({("POST", "/rest/api/2/issue/OPS-1/comment"): [{"id": "1"}],
                         ("POST", "/rest/api/2/issue/OPS-1/transitions"): [None],
                         ("POST", "/rest/api/2/issue/OPS-1/attachments"): [[{"id": "a"}]],
                         ("POST", "/rest/servicedeskapi/request"): [{"issueKey": "OPS-9"}],
                         ("GET", "/rest/api/2/issue/OPS-404"): [NotFound("x", status=404)]})
    service = jira.JiraService(client, "2", "dc")
    service.add_comment("OPS-1", "hi", internal=True)
    service.transition("OPS-1", 21, fields={"resolution": {"name": "Fixed"}}, comment="done")
    added = service.add_attachments("OPS-1", [("f%d.txt" % n, b"x", "text/plain") for n in range(61)])
    service.create_request(10, 25, {"summary": "s"})
    comment, transition, upload1, upload2, request = (call[2] for call in client.calls)
    assert comment["json_body"] == {"body": "hi", "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]}
    assert transition["json_body"] == {"transition": {"id": "21"}, "fields": {"resolution": {"name": "Fixed"}},
                                       "update": {"comment": [{"add": {"body": "done"}}]}}
    assert len(upload1["files"]) == 60 and len(upload2["files"]) == 1 and added == [{"id": "a"}, {"id": "a"}]
    assert upload1["headers"] == {"X-Atlassian-Token": "no-check"} and upload1["files"][0] == ("file", ("f0.txt", b"x", "text/plain"))
    assert request["json_body"] == {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {"summary": "s"}}
    with pytest.raises(NotFound) as caught:
        service.get_issue("OPS-404")
    assert "OPS-404 does not exist" in caught.value.message
    assert service.browse_url("OPS-1") == "https://jira.example/browse/OPS-1"


def test_client_from_params_picks_basic_or_bearer():
    params = {"url": "https://jira.example/", "user": "a@example.com", "token": "secret-token", "timeout": 5.0,
              "validate_certs": True, "ca_path": None, "max_retries": 1, "max_retry_wait": 1.0}
    basic = jira.client_from_params(params)
    assert basic.base_url == "https://jira.example" and basic.auth.apply({})["Authorization"].startswith("Basic ")
    bearer = jira.client_from_params(dict(params, user=None))
    assert bearer.auth.apply({})["Authorization"] == "Bearer secret-token"
    assert "secret-token" in bearer.secrets and "secret-token" in basic.secrets
