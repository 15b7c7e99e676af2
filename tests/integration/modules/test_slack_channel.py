"""slack_channel against the sandbox's Slack through real ansible-playbook: check mode -> apply -> re-run for every
state, 250 invitees, a 600-message transcript with threads, 429/503 recovery and clear errors."""

import json

from sandbox import credentials

MODULE = "selfheal.devops.slack_channel"
KEY = "dt-P-1234"


def task(title, check=None, **args):
    item = {"name": title, MODULE: dict({"incident_key": KEY}, **args), "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def phases(prefix, **args):
    return [task("%s %s" % (prefix, phase), check=phase == "check", **args) for phase in ("check", "apply", "rerun")]


def slack_state(sandbox):
    return sandbox.state()["slack"]


def the_channel(sandbox):
    [channel] = slack_state(sandbox)["channels"].values()
    return channel


def test_present_archived_transcript_check_apply_rerun(sandbox, sandbox_env, playbook, tmp_path):
    users = ["user%03d@example.com" % n for n in range(1, 126)] + ["U1%07d" % n for n in range(126, 251)]
    transcript = tmp_path / "transcript.md"
    steps = (phases("present", topic="P-1234: web crashed on web-01", purpose="Incident dt-P-1234", users=users,
                    text=":rotating_light: *P-1234* web crashed on web-01")
             + phases("thread", text="Restarted web; healthy.", thread_ts="{{ parent_ts }}")
             + phases("transcript", state="transcript", transcript_path=str(transcript))
             + phases("archived", state="archived"))
    # The thread steps reply to the message the present step posted.
    steps.insert(3, {"name": "remember", "ansible.builtin.set_fact": {"parent_ts": "{{ r.ts }}"}})
    run = playbook(steps, env=sandbox_env, diff=True)
    run.assert_no_secret()
    results = run.results

    check, apply, rerun = results["present check"], results["present apply"], results["present rerun"]
    assert not check.get("failed"), check
    assert check["changed"] and check["created"] and len(check["invited"]) == 250
    assert apply["changed"] and apply["created"] and apply["posted"] and len(apply["invited"]) == 250
    assert apply["channel"]["name"] == "inc-dt-p-1234" and apply["channel"]["topic"] == "P-1234: web crashed on web-01"
    assert not rerun["changed"] and rerun["ts"] == apply["ts"] and rerun["invited"] == []
    assert results["thread check"]["changed"] and results["thread apply"]["posted"]
    assert not results["thread rerun"]["changed"]
    assert results["transcript apply"]["message_count"] == 2
    assert results["archived check"]["changed"] and results["archived apply"]["changed"]
    assert not results["archived rerun"]["changed"]

    channel = the_channel(sandbox)
    assert channel["is_archived"] and len(channel["members"]) == 251  # the bot and 250 people
    messages = slack_state(sandbox)["messages"][channel["id"]]
    assert len(messages) == 1 and messages[0]["reply_count"] == 1
    assert messages[0]["metadata"]["event_payload"]["incident_key"] == KEY
    assert "web crashed on web-01" in transcript.read_text() and "Restarted web" in transcript.read_text()


def test_an_archived_channel_is_reopened_and_a_second_run_adds_nothing(sandbox, sandbox_env, playbook):
    steps = [task("first", text="opened"), task("archive", state="archived"),
             task("again", text="opened", users=["oncall.primary@example.com"]),
             task("strict", state="present", unarchive=False)]
    steps.insert(3, task("archive again", state="archived"))
    run = playbook(steps, env=sandbox_env)
    assert run["again"]["changed"] and not run["again"]["created"] and not run["again"]["posted"]
    assert run["again"]["invited"] == ["U0ONCALL01"] and run["again"]["channel"]["is_archived"] is False
    assert run["strict"]["failed"] and "archived" in run["strict"]["msg"]
    assert len(slack_state(sandbox)["channels"]) == 1


def test_transcript_of_600_messages_with_threads_oldest_first(sandbox, sandbox_env, playbook, tmp_path):
    opened = playbook([task("open", text="incident opened")], env=sandbox_env)["open"]
    cid = opened["channel"]["id"]
    chat = [{"channel": cid, "user": "user%03d@example.com" % (n % 7 + 1), "text": "message %03d" % n} for n in range(1, 500)]
    posted = sandbox.call("POST", "/_sandbox/slack/messages", chat)["ts"]
    replies = [{"channel": cid, "user": "oncall.primary@example.com", "text": "reply %03d" % n,
                "thread_ts": posted[(n % 20) * 10]} for n in range(100)]
    sandbox.call("POST", "/_sandbox/slack/messages", replies)
    json_path, md_path = tmp_path / "t.json", tmp_path / "t.md"
    run = playbook([task("json", state="transcript", transcript_path=str(json_path), transcript_format="json"),
                    task("md", state="transcript", transcript_path=str(md_path))], env=sandbox_env)
    result = run["json"]
    assert not result.get("failed"), result
    assert result["message_count"] == 600
    texts = [m["text"] for m in result["transcript"]]
    assert texts[0] == "incident opened" and texts[1] == "message 001" and texts[-1] == "message 499"
    parent = texts.index("message %03d" % 11)  # posted[10] is message 011; its replies follow it
    assert texts[parent + 1:parent + 6] == ["reply %03d" % n for n in (1, 21, 41, 61, 81)]
    saved = json.loads(json_path.read_text())
    assert len(saved["messages"]) == 600 and saved["channel"]["name"] == "inc-dt-p-1234"
    markdown = md_path.read_text()
    assert markdown.count("\n- `") + markdown.count("\n    - `") == 600 and "**oncall-primary**" in markdown
    history_calls = sandbox.requests(credentials.SLACK_PREFIX + "/conversations.history")
    assert len(history_calls) == 2 * 3  # 500 top-level messages, 200 per page, for each of the two runs


def test_rate_limits_and_unavailability_are_retried(sandbox, sandbox_env, playbook):
    sandbox.fault(credentials.SLACK_PREFIX + "/conversations.create", times=1, status=429, headers={"Retry-After": "1"},
                  body={"ok": False, "error": "ratelimited"})
    sandbox.fault(credentials.SLACK_PREFIX + "/chat.postMessage", times=2, status=503, body={"ok": False, "error": "service_unavailable"})
    run = playbook([task("open", text="opened")], env=sandbox_env)
    assert not run["open"].get("failed") and run["open"]["posted"], run["open"]
    assert any("HTTP 429" in w for w in run["open"]["warnings"])
    assert len(slack_state(sandbox)["messages"][run["open"]["channel"]["id"]]) == 1


def test_clear_errors_without_secrets(sandbox, sandbox_env, playbook):
    bad_token = dict(sandbox_env, SLACK_TOKEN="xoxb-000-000-wrong")
    run = playbook([task("token", text="x")], env=bad_token)
    assert run["token"]["failed"] and "invalid_auth" in run["token"]["msg"] and run["token"]["error_kind"] == "auth"
    run = playbook([task("name", name="Incident 1234!"), task("email", users=["nobody@example.com"]),
                    task("missing", state="transcript", name="inc-none")], env=sandbox_env)
    run.assert_no_secret()
    assert run["name"]["failed"] and "invalid Slack channel name" in run["name"]["msg"]
    assert run["email"]["failed"] and "nobody@example.com" in run["email"]["msg"]
    assert run["missing"]["failed"] and "does not exist" in run["missing"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr
    assert slack_state(sandbox)["channels"] == {}  # the unknown e-mail failed before the channel was created


# --- strict inputs and honest results (issue 20) -------------------------------------------------------------

def test_an_unknown_user_id_fails_naming_it_before_anything_is_created(sandbox, sandbox_env, playbook):
    """Used to create the channel and set its topic, then fail on conversations.invite without naming the user."""
    run = playbook([task("unknown id", topic="P-1234", users=["oncall.primary@example.com", "U9NOSUCH1", "U10000002"],
                         text="opened"),
                    task("unknown in check mode", check=True, users=["U9NOSUCH1"])], env=sandbox_env)
    result = run["unknown id"]
    assert result["failed"] and result["error_kind"] == "invalid_input" and result["changed"] is False, result
    assert "unknown Slack user id(s): U9NOSUCH1" in result["msg"] and "nothing was written" in result["msg"]
    assert "U10000002" not in result["msg"]
    assert run["unknown in check mode"]["failed"] and "U9NOSUCH1" in run["unknown in check mode"]["msg"]
    assert slack_state(sandbox)["channels"] == {}
    assert not [r for r in sandbox.requests(credentials.SLACK_PREFIX + "/*") if r["method"] == "POST"]
    run.assert_no_secret()


def test_a_rerun_looks_the_channel_up_and_sends_no_create(sandbox, sandbox_env, playbook):
    """Re-runs used to send conversations.create every time (answered name_taken)."""
    steps = phases("present", topic="P-1234", text="opened") + [task("archive", state="archived"), task("reopen", text="opened")]
    run = playbook(steps, env=sandbox_env)
    assert run["present apply"]["created"] and not run["present rerun"]["changed"]
    assert run["reopen"]["changed"] and not run["reopen"]["created"] and run["reopen"]["channel"]["is_archived"] is False
    creates = sandbox.requests(credentials.SLACK_PREFIX + "/conversations.create")
    assert len(creates) == 1  # the apply; check mode, the re-run and the reopen only looked it up
    assert len(slack_state(sandbox)["channels"]) == 1


def test_name_taken_in_a_race_still_finds_the_channel(sandbox, sandbox_env, playbook):
    """Another run creates the channel between our look-up and our create: name_taken, then found, not doubled."""
    playbook([task("first", topic="P-1234")], env=sandbox_env)
    sandbox.fault(credentials.SLACK_PREFIX + "/conversations.list", times=1, status=200,
                  body={"ok": True, "channels": [], "response_metadata": {"next_cursor": ""}})
    run = playbook([task("racing", topic="P-1234", text="hello")], env=sandbox_env)
    result = run["racing"]
    assert not result.get("failed") and not result["created"] and result["posted"], result
    assert len(sandbox.requests(credentials.SLACK_PREFIX + "/conversations.create")) == 2  # the first run, the race
    assert len(slack_state(sandbox)["channels"]) == 1


def test_a_failure_after_a_write_says_changed_and_what_was_written(sandbox, sandbox_env, playbook):
    sandbox.fault(credentials.SLACK_PREFIX + "/conversations.invite", times=1, status=200,
                  body={"ok": False, "error": "user_is_restricted"})
    run = playbook([task("invite refused", topic="P-1234", users=["oncall.primary@example.com"], text="opened")],
                   env=sandbox_env)
    result = run["invite refused"]
    assert result["failed"] and result["changed"] is True, result
    assert result["written"] == ["created channel #inc-dt-p-1234", "set the topic"]
    assert "user_is_restricted" in result["msg"] and "this run had already created channel #inc-dt-p-1234" in result["msg"]
    run.assert_no_secret()


def test_transcript_creates_missing_folders_owner_only_and_fails_clearly(sandbox, sandbox_env, playbook, tmp_path):
    """The EXAMPLES path (/var/tmp/selfheal/<key>-slack.md) failed when its folder was missing."""
    target = tmp_path / "selfheal" / "incidents" / "dt-P-1234-slack.md"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = playbook([task("open", text="opened"),
                    task("export", state="transcript", transcript_path=str(target)),
                    task("export again", state="transcript", transcript_path=str(target)),
                    task("under a file", state="transcript", transcript_path=str(blocker / "t.md"))], env=sandbox_env)
    assert run["export"]["changed"] and run["export"]["path"] == str(target), run["export"]
    assert "opened" in target.read_text()
    assert oct(target.parent.stat().st_mode & 0o777) == oct(0o700) and oct(target.parent.parent.stat().st_mode & 0o777) == oct(0o700)
    assert not run["export again"]["changed"]
    failed = run["under a file"]
    assert failed["failed"] and failed["error_kind"] == "invalid_input" and "Not a directory" in failed["msg"]
    assert "Traceback" not in run.stdout + run.stderr
