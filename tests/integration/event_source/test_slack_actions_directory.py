"""The slack_actions allow-list with e-mail and user-group entries, read from the sandbox's Slack Web API through the
collection's transport: allowed and refused users, caching, and fail-closed when Slack is slow or refuses the token."""

import hashlib
import hmac
import json
import time
import urllib.parse

import aiohttp

from sandbox import credentials
from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import slack_actions

SECRET = "directory-test-signing-secret"
PATH = "/slack/actions"


def command(text, user, trigger):
    body = urllib.parse.urlencode({"team_id": "T0SANDBOX1", "channel_id": "C1", "channel_name": "inc-dt-p-1234",
                                   "user_id": user, "user_name": user.lower(), "command": "/selfheal", "text": text,
                                   "response_url": "https://hooks.slack.com/commands/T0SANDBOX1/1/x",
                                   "trigger_id": trigger}).encode()
    stamp = str(int(time.time()))
    signature = "v0=" + hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature,
                  "Content-Type": "application/x-www-form-urlencoded"}


async def ask(running, text, user, trigger):
    body, headers = command(text, user, trigger)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.post(running.base + PATH, data=body, headers=headers) as response:
            answer = await response.json()
            return response.status, answer["text"], time.monotonic() - started


def source_args(sandbox, allowed, **extra):
    args = {"signing_secret": SECRET, "allowed_users": allowed, "url": sandbox.url + credentials.SLACK_PREFIX,
            "api_token": credentials.SLACK_TOKEN}
    args.update(extra)
    return args


async def test_email_entries_are_checked_against_the_directory_and_cached(sandbox, run_source):
    running = await run_source(slack_actions.main, source_args(sandbox, {"approve": ["Oncall.Primary@example.com"]}))
    assert (await ask(running, "approve", "U0ONCALL01", "a"))[1] == "Received: approve for dt-P-1234."
    assert (await ask(running, "approve", "U0ONCALL01", "b"))[1] == "Received: approve for dt-P-1234."
    status, text, dummy = await ask(running, "approve", "U0ONCALL02", "c")
    assert status == 200 and text.startswith("Refused: you may not approve dt-P-1234 (not on the allow-list")
    events = [e["slack"] for e in running.events()]
    assert [(e["kind"], e["user_id"], e["user_email"]) for e in events] == [
        ("command", "U0ONCALL01", "oncall.primary@example.com"), ("command", "U0ONCALL01", "oncall.primary@example.com"),
        ("refused", "U0ONCALL02", "oncall.secondary@example.com")]
    lookups = [r for r in sandbox.requests(credentials.SLACK_PREFIX + "/users.info") if r["status"] == 200]
    assert sorted(r["query"]["user"] for r in lookups) == ["U0ONCALL01", "U0ONCALL02"]  # the second ask was cached


async def test_user_group_handles_and_ids(sandbox, run_source):
    sandbox.call("POST", "/_sandbox/slack/usergroups", {"handle": "dba", "users": ["dba.one@example.com"]})
    running = await run_source(slack_actions.main, source_args(sandbox, {"fix": ["@sre-oncall"], "escalate": ["S0SREONCALL"],
                                                                         "note": ["@DBA"]}))
    assert (await ask(running, "fix", "U0ONCALL02", "a"))[1].startswith("Received")
    assert (await ask(running, "fix", "U10000001", "b"))[1].startswith("Refused")
    assert (await ask(running, "escalate", "U0ONCALL01", "c"))[1].startswith("Received")
    assert (await ask(running, "note the table is locked", "U0ONCALL03", "d"))[1].startswith("Received")
    assert (await ask(running, "note the table is locked", "U0ONCALL01", "e"))[1].startswith("Refused")
    assert [e["slack"]["kind"] for e in running.events()] == ["command", "refused", "command", "command", "refused"]
    assert len(sandbox.requests(credentials.SLACK_PREFIX + "/usergroups.list")) == 1  # one read, cached


async def test_a_slow_directory_refuses_within_slacks_three_seconds(sandbox, run_source):
    sandbox.fault(credentials.SLACK_PREFIX + "/users.info", times=-1, hang=True, duration=30)
    running = await run_source(slack_actions.main, source_args(sandbox, {"fix": ["oncall.primary@example.com"]},
                                                               lookup_timeout=0.5))
    status, text, elapsed = await ask(running, "fix", "U0ONCALL01", "slow")
    assert status == 200 and elapsed < 2.0
    assert text.startswith("Refused: you may not fix dt-P-1234 (the allow-list could not be checked")
    refused = running.events()[0]["slack"]
    assert (refused["kind"], refused["action"], refused["requested_action"]) == ("refused", None, "fix")
    sandbox.call("DELETE", "/_sandbox/faults")


async def test_a_refused_token_refuses_and_leaks_nothing(sandbox, run_source):
    args = source_args(sandbox, {"fix": ["@sre-oncall"]})
    args["api_token"] = "xoxb-wrong-token-0000000000"
    running = await run_source(slack_actions.main, args)
    status, text, dummy = await ask(running, "fix", "U0ONCALL02", "x")
    assert status == 200 and "could not be checked" in text and "invalid_auth" in text
    event = running.events()[0]
    assert event["slack"]["kind"] == "refused"
    assert "xoxb-wrong-token" not in json.dumps(event) + text
