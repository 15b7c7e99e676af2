"""The sandbox's watch page and the summary it polls, built from state created through the real service APIs."""

import json
import urllib.request

import requests

import credentials


def test_the_page_is_served_and_shows_no_data_itself(sandbox):
    with urllib.request.urlopen(sandbox.url + "/", timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
        html = response.read().decode()
    assert "/_sandbox/view" in html and "textContent" in html and "innerHTML" not in html


def test_the_summary_follows_the_incident_and_keeps_markup_as_text(sandbox):
    title = "<script>alert(1)</script> Process unavailable"
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": title, "entities": [{"type": "HOST", "name": "web-01"}]})
    requests.post(sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/comments" % problem["problemId"],
                  json={"message": "Remediation started", "context": "selfheal.devops"},
                  headers={"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}, timeout=10).raise_for_status()
    issue = requests.post(sandbox.url + credentials.JIRA_PREFIX + "/rest/api/2/issue", auth=(credentials.JIRA_USER, credentials.JIRA_TOKEN),
                          json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": title}},
                          timeout=10)
    assert issue.status_code == 201, issue.text
    slack = {"Authorization": "Bearer " + credentials.SLACK_TOKEN}
    channel = requests.post(sandbox.url + credentials.SLACK_PREFIX + "/conversations.create", json={"name": "inc-ui"},
                            headers=slack, timeout=10).json()["channel"]
    parent = requests.post(sandbox.url + credentials.SLACK_PREFIX + "/chat.postMessage", headers=slack, timeout=10,
                           json={"channel": channel["id"], "text": "web is down"}).json()
    sandbox.call("POST", "/_sandbox/slack/messages", {"channel": "inc-ui", "user": "oncall.primary@example.com",
                                                      "text": "on it", "thread_ts": parent["ts"]})

    view = sandbox.call("GET", "/_sandbox/view")
    [shown] = view["problems"]
    assert shown["title"] == title and shown["status"] == "OPEN" and shown["comments"] == ["Remediation started"]
    [ticket] = view["tickets"]
    assert ticket["key"] == issue.json()["key"] and ticket["summary"] == title and ticket["status"] == "Open"
    [room] = view["channels"]
    assert room == {"name": "inc-ui", "archived": False, "members": 1, "messages": ["web is down", "    > on it"]}
    assert view["pages"] == [] and view["sequences"] == []
    # The summary is JSON; the page sets it as text, so the title's markup is never parsed.
    assert json.dumps(view).count("<script>") == 2
