# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One incident, every system of record at once. Private to the selfheal.devops collection.

The incident_sync module runs a phase of an incident (open, update, approve, resolve, escalate, record) in one
module run: each system's step (the Dynatrace comment, the page, the ticket, the channel) runs the very logic of its
own module (jira_incident, slack_channel, oncall_notify, dynatrace_problem, through _tasks) on a thread of its own,
so the systems are written concurrently; a step that needs another's result (the channel's opening message names the
ticket and invites the paged people) runs in a later stage. Each step is recorded in the incident's timeline with its
real start, end and result; a step still running when the phase's budget is spent is recorded as failed and left
behind (every write is idempotent on the incident key, and a write whose answer was lost is looked up before it is
sent again, so the next phase catches it up exactly once).
"""

import errno
import fcntl
import hashlib
import os
import threading
import time

from ansible_collections.selfheal.devops.plugins.module_utils import _dynatrace_task, _jira_task, _oncall_task, _slack_task
from ansible_collections.selfheal.devops.plugins.module_utils import _decisions, _tasks, _timeline
from ansible_collections.selfheal.devops.plugins.module_utils._problem import MARKER, OUTCOME_PREFIXES, STARTED_PREFIX

PHASES = ("open", "update", "approve", "resolve", "escalate", "record")
TASKS = {"dynatrace": _dynatrace_task, "oncall": _oncall_task, "jira": _jira_task, "slack": _slack_task}
RESOLVED, ESCALATED = OUTCOME_PREFIXES


def utc(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + (".%06dZ" % int((epoch % 1) * 1000000))


class PhaseLock(object):
    """One phase of an incident at a time: an exclusive lock on <timeline_dir>/<key>.lock, waited for up to timeout."""

    def __init__(self, directory, key, timeout, warn, enabled=True):
        self.path = os.path.join(directory, key + ".lock")
        self.timeout = timeout
        self.warn = warn
        self.enabled = enabled
        self.fd = None

    def __enter__(self):
        if not self.enabled:
            return self
        if not os.path.isdir(os.path.dirname(self.path)):
            os.makedirs(os.path.dirname(self.path), 0o750)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except (IOError, OSError) as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    self.warn("another phase of this incident still runs after %d s; going on beside it" % self.timeout)
                    return self
            time.sleep(0.05)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
        return False


# --- words: what the records say -----------------------------------------------------------------

class Words(object):
    """The texts of an incident's records, from the normalised problem."""

    def __init__(self, key, problem, run_url=""):
        self.key = key
        self.problem = problem or {}
        self.run_url = run_url or ""
        self.display = self.problem.get("display_id") or key
        self.title = self.problem.get("title") or key
        self.hosts = [e.get("name") for e in self.problem.get("entities") or [] if e.get("type") == "HOST"]
        self.url = self.problem.get("url") or ""
        self.summary = "%s: %s%s" % (self.display, self.title, (" on " + ", ".join(self.hosts)) if self.hosts else "")

    def link(self):
        return "[%s](%s)" % (self.display, self.url) if self.url else self.display

    def description(self):
        problem = self.problem
        lines = ["Opened by **selfheal.devops** for Dynatrace problem %s." % self.link(), "",
                 "- Problem: %s" % self.title,
                 "- Severity: %s, impact: %s" % (problem.get("severity") or "unknown", problem.get("impact") or "unknown"),
                 "- Affected: %s" % (", ".join(e.get("name", "") for e in problem.get("entities") or []) or "not reported"),
                 "- Incident key: `%s`" % self.key]
        if self.run_url:
            lines.append("- Remediation run: [%s](%s)" % (self.run_url, self.run_url))
        lines += ["", "The remediation, its verification and the outcome are added as comments; the timeline and the chat "
                  "transcript are attached when the incident is resolved."]
        return "\n".join(lines)

    def opening(self, ticket=None):
        text = ":rotating_light: *%s*\nRemediation started by selfheal.devops." % self.summary
        if self.url:
            text += "\nDynatrace: " + self.url
        if ticket:
            text += "\nTicket: <%s|%s>" % (ticket.get("url"), ticket.get("key"))
        if self.run_url:
            text += "\nRun: " + self.run_url
        return text

    def topic(self, ticket=None):
        return (self.summary + ((" | " + ticket["key"]) if ticket else ""))[:250]

    def with_run(self, text):
        return text + ((" (%s)" % self.run_url) if self.run_url else "")


def timeline_markdown(key, records):
    lines = ["**Timeline** (%s)" % key, ""]
    for r in records:
        lines.append("- `%s` %s / %s / %s: **%s** (%s s)%s" % (
            r.get("time"), r.get("action"), r.get("step"), r.get("system"), r.get("result"), r.get("duration"),
            (" - " + str(r["detail"])) if r.get("detail") else ""))
    return "\n".join(lines)


# --- running steps -------------------------------------------------------------------------------

class Step(object):
    """One system's part of a phase: work(incident) -> (result, detail, data); recorded with its real times."""

    def __init__(self, name, system, work, quiet=False):
        self.name = name
        self.system = system
        self.work = work
        self.quiet = quiet  # recorded only when it changed something or failed (a catch-up that found all in place)
        self.started = None
        self.ended = None
        self.result = None
        self.detail = ""
        self.data = {}
        self.thread = None

    def run(self, incident):
        self.started = time.time()
        try:
            self.result, self.detail, self.data = self.work(incident)
        except Exception as error:  # noqa: BLE001 - a step's bug must be a recorded failure, not a lost phase
            self.result, self.detail, self.data = "failed", "%s: %s" % (type(error).__name__, error), {}
        self.ended = time.time()

    def record(self, action):
        ended = self.ended if self.ended is not None else time.time()
        return {"time": utc(ended), "incident": None, "action": action, "step": self.name, "system": self.system,
                "result": self.result or "failed", "duration": round(ended - (self.started or ended), 3),
                "detail": self.detail if self.result else "no answer within the phase's budget; caught up later"}


class Incident(object):
    """A phase of one incident across the enabled systems (see incident_sync's documentation for params)."""

    def __init__(self, params, check_mode=False, warn=None, clock=time.monotonic):
        self.params = params
        self.check_mode = check_mode
        self.warn = warn or (lambda message: None)
        self.clock = clock
        self.key = params["incident_key"]
        self.words = Words(self.key, params["problem"], params["run_url"])
        # Waiting for a human is not communication: approve may wait its approval_timeout on top of the budget.
        waiting = params["oncall"]["approval_timeout"] if params["phase"] == "approve" else 0
        self.deadline = clock() + params["budget"] + waiting
        self.steps = []
        self.errors = []
        self.written = False
        self.lock = threading.Lock()
        self.found = {}  # what earlier steps learnt: ticket, channel, page (on-call people)
        path = os.path.join(params["timeline_dir"], self.key + ".json")
        self.timeline_path = path
        self.saved = []

    # systems ----------------------------------------------------------------------------------
    def enabled(self, system):
        p = self.params
        if system == "dynatrace":
            return bool(p["dynatrace"]["enabled"]) and bool(self.words.problem.get("id"))
        if system == "oncall":
            return bool(p["oncall"]["provider"])
        if system == "jira":
            return bool(p["jira"]["project"])
        return bool(p["slack"]["enabled"])

    def call(self, system, args):
        """Run one module's logic for a system; its result dict (failed results are returned, not raised)."""
        merged = dict(self.params["connections"].get(system) or {})
        merged.update(timeout=self.params["request_timeout"], max_retries=self.params["max_retries"],
                      max_retry_wait=self.params["max_retry_wait"])
        merged.update(dict((k, v) for k, v in args.items() if v is not None))
        module = TASKS[system]
        result = _tasks.run(module.execute, module.argument_spec(), module.CONSTRAINTS, merged, self.check_mode)
        for warning in result.pop("warnings", []):
            self.warn("%s: %s" % (system, warning))
        if result.get("changed"):
            self.written = True
        return result

    # stages ----------------------------------------------------------------------------------
    def stage(self, steps, wait=None):
        """Run steps concurrently until each ends or the phase's budget is spent.

        With wait, return after at most that many seconds: a step still running goes on in the background (a later
        stage that only wants its result when it is there - the channel's ticket link - is not held by a hanging
        system) and is waited for, within the budget, by finish().
        """
        steps = [s for s in steps if s is not None]
        for step in steps:
            step.thread = threading.Thread(target=step.run, args=(self,), name="selfheal-" + step.system, daemon=True)
            step.thread.start()
            self.steps.append(step)
        until = self.deadline if wait is None else min(self.deadline, self.clock() + wait)
        for step in steps:
            step.thread.join(max(0.0, until - self.clock()))
        if wait is None:
            self._settle(steps)
        return dict((s.name, s) for s in steps)

    def finish(self):
        """Wait, within the budget, for the steps still running; the ones that never answered are failures."""
        self._settle([s for s in self.steps if s.thread is not None and s.thread.is_alive()])

    def _settle(self, steps):
        for step in steps:
            step.thread.join(max(0.0, self.deadline - self.clock()))
            if step.thread.is_alive():
                step.result = None
            if (step.result is None or step.result == "failed") and not getattr(step, "reported", False):
                step.reported = True
                self.errors.append({"step": step.name, "system": step.system,
                                    "error": step.detail if step.result else "no answer within %g s" % self.params["budget"]})

    def records(self, action):
        out = []
        for step in self.steps:
            if step.quiet and step.result == "ok":
                continue
            record = step.record(action)
            record["incident"] = self.key
            out.append(record)
        return out

    # the timeline ----------------------------------------------------------------------------
    def read_timeline(self):
        result = _timeline.run({"path": self.timeline_path, "incident": self.key, "problem": self.words.display,
                                "append": [], "create": False}, True)
        self.saved = result["records"]
        return self.saved

    def already_resolved(self):
        """A resolve ran before (even if a system failed in it): the incident is not opened or changed again."""
        return any(r.get("action") == "resolve" for r in self.saved)

    def resolved_cleanly(self):
        """The last resolve wrote everything it had to (no failed step): a new resolve has nothing to catch up."""
        last = []
        for record in self.saved:
            if record.get("action") == "resolve":
                last.append(record)
            elif last:
                last = []
        return bool(last) and all(r.get("result") != "failed" for r in last)

    def save(self, records):
        if not records and os.path.exists(self.timeline_path):
            return self.saved
        result = _timeline.run({"path": self.timeline_path, "incident": self.key, "problem": self.words.display,
                                "append": records, "create": True}, self.check_mode)
        self.saved = result["records"]
        return self.saved

    # the steps of each system ----------------------------------------------------------------
    def comment(self, name, text, close=False):
        if not self.enabled("dynatrace"):
            return None
        message = "%s %s" % (MARKER, self.words.with_run(text))

        def work(incident):
            result = incident.call("dynatrace", {
                "problem_id": incident.words.problem["id"], "comment": message,
                "state": "closed" if close else "present", "close_message": "%s %s" % (MARKER, text)})
            if result.get("failed"):
                return "failed", result.get("msg", "failed"), result
            return ("changed" if result.get("changed") else "ok"), ("closed" if result.get("closed") else ""), result
        return Step(name, "dynatrace", work)

    def page(self, name, state, key=None, groups=None, comment=None):
        if not self.enabled("oncall"):
            return None
        oncall = self.params["oncall"]
        provider = oncall["provider"]
        words = self.words
        args = {"provider": provider, "state": state, "incident_key": key or self.key, "summary": words.summary[:1000],
                "source": (words.hosts[0] if words.hosts else "selfheal.devops"), "severity": oncall["severity"],
                "priority": oncall["priority"], "groups": groups if groups is not None else oncall["groups"],
                "properties": {"problem": words.problem.get("display_id") or "", "title": words.title,
                               "hosts": ", ".join(words.hosts), "url": words.url},
                "comment": comment}
        if provider == "xmatters" and oncall["response_options"]:
            args["response_options"] = oncall["response_options"]
        if provider == "xmatters" and self.params["phase"] == "open" and oncall["approve"]:
            args["approve_response"] = oncall["approve_response"]
        if words.url:
            args["links"] = [{"href": words.url, "text": "Dynatrace problem"}]

        def work(incident):
            result = incident.call("oncall", args)
            if result.get("failed"):
                return "failed", result.get("msg", "failed"), result
            people = [n.get("recipient") for n in result.get("notified") or [] if n.get("recipient")]
            detail = ", ".join(people) or (result.get("event") or {}).get("status") or result.get("event_action") or ""
            with incident.lock:
                incident.found["on_call"] = result.get("on_call") or []
                incident.found["page"] = result.get("event")
            return ("changed" if result.get("changed") else "ok"), detail, result
        return Step(name, provider, work)

    def ticket(self, name, state, comment=None, comment_id=None, attachments=None, quiet=False):
        if not self.enabled("jira"):
            return None
        jira = self.params["jira"]
        args = {"project": jira["project"], "incident_key": self.key, "state": state}
        if state == "present":
            args.update(issue_type=jira["issue_type"], summary=self.words.summary[:250], description=self.words.description(),
                        priority=jira["priority"] or None, labels=jira["labels"], components=jira["components"],
                        service_desk_id=jira["service_desk_id"] or None, request_type_id=jira["request_type_id"] or None)
        if comment is not None:
            args.update(comment=comment, comment_id=comment_id)
        if state == "resolved":
            args.update(status=jira["resolved_status"] or None, resolution=jira["resolution"] or None)
        if attachments:
            args["attachments"] = attachments

        def work(incident):
            if attachments:
                # Each file once by name: the timeline of a later catch-up does not replace the resolution's.
                attached = incident.found.get("ticket_files") or []
                args["attachments"] = [a for a in attachments if os.path.isfile(a) and os.path.basename(a) not in attached]
            result = incident.call("jira", args)
            if result.get("failed"):
                return "failed", result.get("msg", "failed"), result
            with incident.lock:
                incident.found["ticket"] = {"key": result.get("key"), "url": result.get("url"), "status": result.get("status")}
                incident.found["ticket_files"] = [a.get("filename") for a in (result.get("issue") or {}).get("attachments") or []]
            return ("changed" if result.get("changed") else "ok"), "%s %s" % (result.get("key"), result.get("status") or ""), result
        return Step(name, "jira", work, quiet=quiet)

    def channel(self, name, state, text=None, users=None, topic=None, blocks=None, message_id=None, transcript=None):
        if not self.enabled("slack"):
            return None
        slack = self.params["slack"]
        args = {"incident_key": self.key, "name_prefix": slack["channel_prefix"], "private": slack["private"],
                "state": state}

        def work(incident):
            call = dict(args)
            if state == "present":
                ticket = incident.found.get("ticket")
                call.update(text=text(ticket) if callable(text) else text, message_id=message_id,
                            blocks=blocks(incident) if callable(blocks) else blocks,
                            topic=topic(ticket) if callable(topic) else topic,
                            users=users(incident) if callable(users) else (users or []))
            elif state == "transcript":
                call["transcript_path"] = transcript
            result = incident.call("slack", call)
            if result.get("failed"):
                return "failed", result.get("msg", "failed"), result
            channel = result.get("channel") or {}
            with incident.lock:
                incident.found["channel"] = channel
            detail = "#%s" % (channel.get("name") or "")
            if result.get("invited"):
                detail += " +%d invited" % len(result["invited"])
            if result.get("message_count") is not None:
                detail += " %d messages" % result["message_count"]
            return ("changed" if result.get("changed") else "ok"), detail, result
        return Step(name, "slack", work)

    def invitees(self):
        slack = self.params["slack"]
        people = list(slack["users"])
        if slack["oncall_email_domain"]:
            for group in self.found.get("on_call") or []:
                for member in group.get("members") or []:
                    if member.get("target_name"):
                        people.append("%s@%s" % (member["target_name"], slack["oncall_email_domain"]))
        return list(dict.fromkeys(people))

    def buttons(self):
        """Block Kit actions for the incident, scoped to its key (see the slack_actions event source)."""
        if not self.params["slack"]["buttons"]:
            return None
        actions = [("approve", "Approve fix", "primary"), ("ignore", "Ignore", None), ("fix", "Run fix again", None),
                   ("escalate", "Escalate", "danger")]
        elements = []
        for action, label, style in actions:
            button = {"type": "button", "action_id": "selfheal_%s" % action, "value": self.key,
                      "text": {"type": "plain_text", "text": label}}
            if style:
                button["style"] = style
            elements.append(button)
        return [{"type": "section", "text": {"type": "mrkdwn", "text": self.words.opening(self.found.get("ticket"))}},
                {"type": "actions", "block_id": "selfheal-%s" % self.key, "elements": elements}]

    # phases ------------------------------------------------------------------------------------
    def open(self):
        # The channel names the ticket and invites the people paged: it waits for them, but not for a system that
        # does not answer (it then opens without the ticket's link; the ticket still comes, or is caught up later).
        self.stage([self.comment("remediation started", "%s for %s" % (STARTED_PREFIX, self.words.summary)),
                    self.page("page on-call", "triggered"),
                    self.ticket("open ticket", "present")], wait=self.params["request_timeout"])
        self.stage([self.channel("open channel", "present", text=self.words.opening, topic=self.words.topic,
                                 users=lambda incident: incident.invitees(), blocks=lambda incident: incident.buttons(),
                                 message_id="opening")])
        self.finish()

    def update(self, message):
        self.stage([self.comment("progress", message),
                    self.ticket("progress", "present", comment=message, comment_id="%s-progress-%s" % (self.key, _digest(message))),
                    self.channel("progress", "present", text=message)])

    def escalate(self, message):
        oncall = self.params["oncall"]
        self.stage([self.comment("escalated", "%s to a human: %s" % (ESCALATED, message)),
                    self.page("escalate page", "triggered", key=self.key + "-escalated",
                              groups=oncall["escalation_groups"] or oncall["groups"],
                              comment="Automatic remediation did not fix it: " + message),
                    self.ticket("escalated", "present", comment="Automatic remediation did not fix it; escalated to a "
                                "human. " + message, comment_id="%s-escalated-%s" % (self.key, _digest(message))),
                    self.channel("escalated", "present", users=lambda incident: incident.invitees(),
                                 text=":warning: Automatic remediation did not fix it; escalated to a human. " + message)])

    def resolve(self, message, fix_records):
        transcript = os.path.join(self.params["timeline_dir"], self.key + "-slack.md")
        first = self.stage([
            self.comment("resolved", "%s: %s" % (RESOLVED, message), close=self.params["dynatrace"]["close"]),
            self.page("resolve page", "resolved"),
            self.channel("outcome", "present", text=":white_check_mark: %s: %s" % (RESOLVED, message),
                         message_id="resolved"),
            # Catch-up: the ticket is opened here when the open phase could not (Jira down, budget spent).
            self.ticket("open ticket", "present", quiet=True)])
        if "outcome" in first:
            self.stage([self.channel("transcript", "transcript", transcript=transcript)])
        timeline = self.save(fix_records + self.records("resolve"))
        self.steps = []
        files = [self.timeline_path] + ([transcript] if self.enabled("slack") else [])
        comment = "Resolved by selfheal.devops: %s\n\n%s" % (message, timeline_markdown(self.key, timeline))
        self.stage([self.ticket("resolve ticket", "resolved", comment=comment, comment_id=self.key + "-resolved",
                                attachments=files),
                    self.channel("archive channel", "archived")])

    def approve(self, decision_dir, approve_response):
        """Wait for the first answer: a decision file written by an event source (callback or Slack button), or
        the xMatters page's first response; the first one wins, and is written down so every later one sees it."""
        oncall = self.params["oncall"]
        step = Step("approval", oncall["provider"] or "approval", lambda incident: incident._wait(decision_dir, approve_response))
        self.stage([step])
        answer = step.data if step.data else {}
        if not answer:
            answer = {"approved": False, "response": "no_response", "responder": "", "source": ""}
        decided_by = (" by %s" % answer["responder"]) if answer.get("responder") else ""
        if answer.get("approved"):
            text = "Approved%s (%s, %s): running the fix." % (decided_by, answer.get("response"), answer.get("source"))
        else:
            text = "Not approved (%s%s): no automatic fix." % (answer.get("response"), decided_by)
        self.stage([self.ticket("approval", "present", comment=text, comment_id="%s-approval" % self.key),
                    self.channel("approval", "present", text=(":white_check_mark: " if answer.get("approved") else ":no_entry: ") + text)])
        return answer

    def _wait(self, decision_dir, approve_response):
        oncall = self.params["oncall"]
        if oncall["provider"] != "xmatters" and not decision_dir:
            return "failed", ("approve mode needs someone to answer: xMatters response options (set "
                              "incident_oncall_provider to xmatters) or a decision_dir the oncall_callback and "
                              "slack_actions event sources write to"), {
                "approved": False, "response": "failed", "responder": "", "source": ""}
        started = time.time()
        poll_every = max(0.2, float(oncall["approval_poll_interval"]))
        next_poll = self.clock()
        deadline = self.clock() + float(oncall["approval_timeout"])
        event = None
        while self.clock() < deadline:
            decision = _decisions.read(decision_dir, self.key, started)
            if decision is not None:
                _decisions.consume(decision_dir, self.key)
                return "ok", _decisions.describe(decision), _interpret(decision, approve_response)
            if oncall["provider"] == "xmatters" and self.clock() >= next_poll:
                next_poll = self.clock() + poll_every
                event, answer = self._xmatters_answer(event)
                if answer is not None:
                    decision = {"source": "xmatters", "response": answer["response"], "responder": answer.get("recipient"),
                                "time": time.time()}
                    if decision_dir:
                        decision = _decisions.write(decision_dir, self.key, decision)[0]
                        _decisions.consume(decision_dir, self.key)
                    return "ok", _decisions.describe(decision), _interpret(decision, approve_response)
            time.sleep(0.1)
        return "ok", "no answer within %s s" % oncall["approval_timeout"], {
            "approved": False, "response": "no_response", "responder": "", "source": ""}

    def _xmatters_answer(self, event):
        from ansible_collections.selfheal.devops.plugins.module_utils import oncall as oncall_api

        connection = dict(self.params["connections"].get("oncall") or {})
        task, dummy = _tasks.prepare(_oncall_task.argument_spec(), _oncall_task.CONSTRAINTS, dict(
            connection, provider="xmatters", incident_key=self.key, timeout=self.params["request_timeout"],
            max_retries=self.params["max_retries"], max_retry_wait=self.params["max_retry_wait"]))
        service = oncall_api.client_from_params(task.params, log=self.warn)
        if event is None:
            events = service.find_open_events(task.params["key_property"], self.key)
            if not events:
                return None, None
            event = events[0]
        return event, oncall_api.first_response(service.deliveries(event["id"]))


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


# --- decisions: the first answer wins (see _decisions) ---------------------------------------------

def _interpret(decision, approve_response):
    if decision.get("source") == "slack":
        approved = decision.get("action") in ("approve", "fix")
        response = decision.get("action")
    else:
        approved = decision.get("response") == approve_response
        response = decision.get("response")
    return {"approved": approved, "response": response, "responder": decision.get("responder") or "",
            "source": decision.get("source") or ""}
