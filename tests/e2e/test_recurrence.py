"""End to end, afterwards: the same crash again and again through the real rulebook. After each incident the remediation
role counts its occurrences in Jira and writes its post-mortem onto the ticket; the 4th occurrence within 30 days opens
one problem ticket linked to every occurrence, the 5th links to it and opens no other."""

import json

import pytest

from utils import estate
from utils.loops import crash_and_report, self_healing_loop, tickets_for, timeline

HOST = "web-07"  # a host of its own: no other e2e test's crash counts as an occurrence of this one


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    settings = {"process_restart_max_attempts": 20, "remediation_postmortem_charts": True}
    # Occurrences are counted in Jira's history: start from the seed, so that no earlier test's crash (of another
    # host, the same process) counts as one of this test's.
    sandbox_session.reset()
    with self_healing_loop(installed_collection, sandbox_session, tmp_path_factory.mktemp("e2e-recurrence"),
                           settings=settings, more_hosts=(HOST,)) as activation:
        yield activation


def problem_tickets(sandbox):
    return [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if i["fields"]["issuetype"] == "Problem"]


def occurrence(loop, sandbox):
    """One crash of web-07, healed and resolved; then the run's analytics (recurrence, post-mortem) are done."""
    old, problem = crash_and_report(loop, sandbox, HOST)
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: any(r["step"] == "archive channel" for r in timeline(loop, key)["records"]), timeout=120,
                      what="%s resolved" % key)
    loop.wait_idle(timeout=120)
    assert loop.supervisors[HOST].pid() not in (0, old)
    [ticket] = tickets_for(sandbox, key)
    return key, ticket


def test_the_fourth_occurrence_opens_one_problem_ticket_and_the_fifth_links_to_it(loop, sandbox_session):
    sandbox = sandbox_session
    tickets = []
    for number in range(1, 4):
        key, ticket = occurrence(loop, sandbox)
        tickets.append(ticket["key"])
        # Every incident's post-mortem is on its ticket, once (Markdown and HTML).
        names = [a["filename"] for a in ticket["attachments"]]
        assert names.count(key + "-postmortem.md") == 1 and names.count(key + "-postmortem.html") == 1, names
    assert problem_tickets(sandbox) == []
    comments = [json.dumps(c["body"]) for c in tickets_for(sandbox, key)[0]["comments"]]
    assert sum("seen 2 times in the last 30 days" in c for c in comments) == 1, comments

    key, ticket = occurrence(loop, sandbox)
    tickets.append(ticket["key"])
    [problem_ticket] = problem_tickets(sandbox)
    links = [link for link in sandbox.state()["jira"]["cloud"]["links"].values() if link["inward"] == problem_ticket["key"]]
    assert sorted(link["outward"] for link in links) == sorted(tickets)

    key, ticket = occurrence(loop, sandbox)
    tickets.append(ticket["key"])
    assert [t["key"] for t in problem_tickets(sandbox)] == [problem_ticket["key"]]
    links = [link for link in sandbox.state()["jira"]["cloud"]["links"].values() if link["inward"] == problem_ticket["key"]]
    assert sorted(link["outward"] for link in links) == sorted(tickets)
