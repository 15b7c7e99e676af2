"""teams_channel against the sandbox's Microsoft identity platform, Graph v1.0 and Bot Framework connector through
real ansible-playbook: check mode -> apply -> idempotent re-run (reads only) -> sandbox state for every state, private
channels and Graph posting with a delegated token, a 150-message transcript, throttling and token refresh, clear
errors with nothing half-created."""

import json

from sandbox import credentials
from sandbox import msgraph as sandbox_graph

MODULE = "selfheal.devops.teams_channel"
KEY = "dt-P-1234"
OPS = sandbox_graph.OPS_TEAM
GRAPH = credentials.MSGRAPH_PREFIX + "/v1.0"


def task(title, check=None, **args):
    item = {"name": title, MODULE: dict({"team": "Operations", "incident_key": KEY}, **args), "register": "r",
            "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def phases(prefix, **args):
    return [task("%s %s" % (prefix, phase), check=phase == "check", **args) for phase in ("check", "apply", "rerun")]


def graph_state(sandbox):
    return sandbox.state()["msgraph"]


def incident_channels(sandbox, team=OPS):
    return [c for c in graph_state(sandbox)["teams"][team]["channels"].values() if c["displayName"] != "General"]


def user_id(sandbox, upn):
    return next(uid for uid, u in graph_state(sandbox)["users"].items() if u["userPrincipalName"] == upn)


def writes(entries):
    return [e for e in entries if e["method"] != "GET"]


def test_present_thread_transcript_closed_check_apply_rerun(sandbox, sandbox_env, playbook, tmp_path):
    transcript = tmp_path / "teams.md"
    members = ["oncall.primary@example.com", "dba.one@example.com", "oncall.secondary@example.com"]
    steps = (phases("present", description="P-1234: web crashed on web-01", members=members,
                    text="**P-1234** web crashed on web-01. Restarting it now.")
             + phases("thread", reply_to="{{ parent }}", text="Restarted web; healthy.")
             + phases("transcript", state="transcript", transcript_path=str(transcript))
             + phases("closed", state="closed", close_action=["rename", "archive"]))
    steps.insert(3, {"name": "remember", "ansible.builtin.set_fact": {"parent": "{{ r.message }}"}})
    run = playbook(steps, env=sandbox_env, diff=True)
    run.assert_no_secret()
    assert "Traceback" not in run.stdout + run.stderr
    results = run.results
    for name, result in results.items():
        if name == "remember":
            continue
        assert not result.get("failed"), (name, result.get("msg"))
        assert result["changed"] is (not name.endswith("rerun") and name != "transcript check"), name

    check, apply, rerun = results["present check"], results["present apply"], results["present rerun"]
    assert check["created"] and check["channel"] is None and check["diff"]["after"]["channel"] == "inc-dt-P-1234"
    assert len(check["added"]) == 2  # oncall.secondary is in the team already
    assert apply["created"] and apply["posted"] and apply["channel"]["displayName"] == "inc-dt-P-1234"
    assert sorted(apply["added"]) == sorted(user_id(sandbox, u) for u in members[:2])
    assert not rerun["created"] and not rerun["posted"] and rerun["added"] == [] and rerun["message"] == apply["message"]
    assert results["thread apply"]["posted"] and results["thread rerun"]["message"] == results["thread apply"]["message"]
    assert results["transcript apply"]["message_count"] == 2
    assert results["transcript check"]["message_count"] == 2 and "path" not in results["transcript check"]
    assert results["closed check"]["diff"]["after"] == {"displayName": "closed-inc-dt-P-1234", "isArchived": True}
    assert results["closed apply"]["channel"]["isArchived"] is True

    [channel] = incident_channels(sandbox)
    assert channel["displayName"] == "closed-inc-dt-P-1234" and channel["isArchived"]
    assert channel["description"] == "P-1234: web crashed on web-01"
    team_members = [m["userId"] for m in graph_state(sandbox)["teams"][OPS]["members"]]
    assert all(user_id(sandbox, u) in team_members for u in members) and len(team_members) == len(set(team_members))
    [message] = graph_state(sandbox)["messages"][channel["id"]]
    assert message["from"]["application"]["id"] == credentials.MSGRAPH_CLIENT_ID and len(message["replies"]) == 1
    assert "[selfheal:" in message["body"]["content"] and "[selfheal:" in message["replies"][0]["body"]["content"]
    markdown = transcript.read_text()
    assert markdown.startswith("# Microsoft Teams transcript of Operations / inc-dt-P-1234\n")
    assert "**Selfheal**: **P-1234** web crashed on web-01. Restarting it now." in markdown
    assert "\n    - `" in markdown and "Restarted web; healthy." in markdown and "[selfheal:" not in markdown


def test_idempotent_rerun_makes_no_write(sandbox, sandbox_env, playbook):
    args = dict(members=["oncall.primary@example.com"], text="opened")
    assert playbook([task("open", **args)], env=sandbox_env)["open"]["created"]
    sandbox.call("DELETE", "/_sandbox/log")
    again = playbook([task("open", **args)], env=sandbox_env)["open"]
    assert not again["changed"] and not again.get("failed")
    graph_calls = sandbox.requests(GRAPH + "/*")
    assert writes(graph_calls) == [] and sandbox.requests(credentials.MSGRAPH_BOT_PREFIX + "/*") == []
    assert [e["path"].split("/v1.0")[1].split("/")[1] for e in graph_calls] == ["teams", "users", "teams", "teams", "teams"]
    assert len(sandbox.requests(credentials.MSGRAPH_LOGIN_PREFIX + "/*")) == 1  # one token for the whole run


def test_private_channel_and_graph_posting_with_a_delegated_token(sandbox, sandbox_env, playbook):
    delegated = dict(sandbox_env, MSGRAPH_TOKEN=credentials.MSGRAPH_DELEGATED_TOKEN)
    args = dict(name="inc-private-1", membership_type="private", owners=["selfheal.bot@example.com"],
                members=["oncall.primary@example.com"], text="Private incident room.", post_as="graph")
    more = dict(args)
    more["members"] = ["oncall.primary@example.com", "dba.two@example.com"]
    run = playbook([task("open", **args), task("again", **args), task("add one", **more)], env=delegated)
    run.assert_no_secret()
    assert run["open"]["created"] and run["open"]["posted"] and run["open"]["added"] == [user_id(sandbox, "oncall.primary@example.com")]
    assert not run["again"]["changed"]
    assert run["add one"]["added"] == [user_id(sandbox, "dba.two@example.com")]
    [channel] = incident_channels(sandbox)
    assert channel["membershipType"] == "private"
    assert [(m["userId"], m["roles"]) for m in channel["members"]] == [
        (user_id(sandbox, "selfheal.bot@example.com"), ["owner"]), (user_id(sandbox, "oncall.primary@example.com"), []),
        (user_id(sandbox, "dba.two@example.com"), [])]
    [message] = graph_state(sandbox)["messages"][channel["id"]]
    assert message["from"]["user"]["displayName"] == "Selfheal Bot"
    # Graph refuses an application token for posting: the module says so before writing anything.
    refused = playbook([task("app graph post", name="inc-app-post", text="x", post_as="graph")], env=sandbox_env)
    assert refused["app graph post"]["failed"] and "delegated token" in refused["app graph post"]["msg"]
    assert len(incident_channels(sandbox)) == 1


def test_transcript_of_150_messages_with_replies_pages_and_writes_only_on_change(sandbox, sandbox_env, playbook, tmp_path):
    opened = playbook([task("open", text="incident opened")], env=sandbox_env)["open"]
    chat = [{"team": OPS, "channel": "inc-dt-P-1234", "user": "user%03d@example.com" % (n % 7 + 1),
             "text": "message %03d" % n} for n in range(1, 150)]
    ids = sandbox.call("POST", "/_sandbox/msgraph/messages", chat)["ids"]
    replies = [{"team": OPS, "channel": "inc-dt-P-1234", "user": "oncall.primary@example.com", "text": "reply %02d" % n,
                "reply_to": ids[(n % 5) * 10]} for n in range(25)]
    sandbox.call("POST", "/_sandbox/msgraph/messages", replies)
    json_path, md_path = tmp_path / "t.json", tmp_path / "t.md"
    steps = [task("json", state="transcript", transcript_path=str(json_path), transcript_format="json"),
             task("md", state="transcript", transcript_path=str(md_path)),
             task("md again", state="transcript", transcript_path=str(md_path))]
    sandbox.call("DELETE", "/_sandbox/log")
    run = playbook(steps, env=sandbox_env)
    result = run["json"]
    assert not result.get("failed"), result
    assert result["message_count"] == 175 and result["changed"] and run["md"]["changed"] and not run["md again"]["changed"]
    texts = [m["text"] for m in result["transcript"]]
    assert texts[0] == "incident opened" and texts[1] == "message 001" and texts[-1] == "message 149"
    parent = texts.index("message 011")  # ids[10]; its replies (n % 5 == 1) follow it, oldest first
    assert texts[parent + 1:parent + 6] == ["reply %02d" % n for n in (1, 6, 11, 16, 21)]
    assert all(m["reply_to"] == ids[10] for m in result["transcript"][parent + 1:parent + 6])
    saved = json.loads(json_path.read_text())
    assert len(saved["messages"]) == 175 and saved["channel"]["displayName"] == "inc-dt-P-1234"
    assert saved["team"] == {"id": OPS, "displayName": "Operations"}
    markdown = md_path.read_text()
    assert markdown.count("\n- `") == 150 and markdown.count("\n    - `") == 25 and "**User002**" in markdown
    listed = sandbox.requests(GRAPH + "/teams/%s/channels/*/messages" % OPS)
    assert len(listed) == 3 * 3 and all(e["query"]["$top"] == "50" for e in listed)  # 150 top-level messages, 3 runs
    assert opened["message"] in [m["id"] for m in result["transcript"]]


def test_throttling_and_a_401_with_a_cached_token_are_recovered(sandbox, sandbox_env, playbook):
    sandbox.fault(GRAPH + "/teams/*/channels", method="POST", times=1, status=429, headers={"Retry-After": "1"},
                  body={"error": {"code": "TooManyRequests", "message": "Too many requests"}})
    sandbox.fault(GRAPH + "/teams/*/members", method="GET", times=1, status=401,
                  body={"error": {"code": "InvalidAuthenticationToken", "message": "Lifetime validation failed, the token is expired."}})
    sandbox.fault(credentials.MSGRAPH_BOT_PREFIX + "/v3/conversations", method="POST", times=1, status=503,
                  body={"error": {"code": "ServiceUnavailable", "message": "try later"}})
    run = playbook([task("open", members=["oncall.primary@example.com"], text="opened")], env=sandbox_env)
    result = run["open"]
    assert not result.get("failed") and result["created"] and result["posted"], result
    assert any("HTTP 429; retrying in 1.0 s" in w for w in result["warnings"]) and any("HTTP 503" in w for w in result["warnings"])
    tokens = sandbox.requests(credentials.MSGRAPH_LOGIN_PREFIX + "/*")
    assert len(tokens) == 3  # Graph, Graph again after the 401, Bot Framework
    [channel] = incident_channels(sandbox)
    assert len(graph_state(sandbox)["messages"][channel["id"]]) == 1


def test_clear_errors_and_nothing_half_created(sandbox, sandbox_env, playbook):
    wrong_secret = dict(sandbox_env, MSGRAPH_CLIENT_SECRET="Sbx8Q~WrongWrongWrongWrong")
    bad = playbook([task("secret", text="x")], env=wrong_secret)["secret"]
    assert bad["failed"] and bad["error_kind"] == "auth" and bad["status"] == 401
    assert bad["msg"].startswith("Microsoft identity platform token request answered HTTP 401: invalid_client - AADSTS7000215")
    run = playbook([
        task("unknown team", team="Nobody's Team", text="x"),
        task("unknown team id", team="2c8f5a4d-3e6f-4071-8a1b-2c3d4e5f6a7b", text="x"),
        task("unknown people", members=["nobody@example.com", "oncall.primary@example.com", "ghost@example.com"], text="x"),
        task("bad name", name="Incident #1: web/db?"),
        task("private without owner", name="inc-p", membership_type="private"),
        task("missing transcript", state="transcript", name="inc-none"),
        task("no bot", team="Database", name="inc-db-1", text="opened"),
        task("no bot again", team="Database", name="inc-db-1", text="opened"),
    ], env=sandbox_env)
    text = run.stdout + run.stderr
    assert "Traceback" not in text and "WrongWrong" not in text
    run.assert_no_secret()
    assert run["unknown team"]["error_kind"] == "not_found" and "Nobody's Team" in run["unknown team"]["msg"]
    assert "Microsoft Teams" in run["unknown team"]["msg"]
    assert run["unknown team id"]["error_kind"] == "not_found" and "2c8f5a4d" in run["unknown team id"]["msg"]
    people = run["unknown people"]
    assert people["error_kind"] == "invalid_input" and "nobody@example.com, ghost@example.com" in people["msg"]
    assert not people["changed"]
    assert "invalid Teams channel name" in run["bad name"]["msg"]
    assert "needs owners" in run["private without owner"]["msg"]
    assert "does not exist" in run["missing transcript"]["msg"]
    # The Database team does not have the app's bot: the channel was created before the post failed, and the failure
    # says so (changed, written); the next run finds that channel instead of creating a second one.
    no_bot = run["no bot"]
    assert no_bot["failed"] and no_bot["error_kind"] == "auth" and "not installed in the team" in no_bot["msg"]
    assert no_bot["changed"] and no_bot["written"] == ["channel inc-db-1"]
    assert run["no bot again"]["failed"] and "written" not in run["no bot again"]
    assert incident_channels(sandbox) == []
    assert [c["displayName"] for c in incident_channels(sandbox, sandbox_graph.NOBOT_TEAM)] == ["inc-db-1"]
