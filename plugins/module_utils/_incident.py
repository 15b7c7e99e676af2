# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One incident, every system of record at once. Private to the selfheal.devops collection.

The incident_sync module runs a phase of an incident (open, update, approve, resolve, escalate, record) in one
module run: each system's step (the Dynatrace comment, the page, the tickets in Jira and ServiceNow, the channels in
Slack and Microsoft Teams) runs the very logic of its own module (dynatrace_problem, oncall_notify, jira_incident,
servicenow_incident, slack_channel, teams_channel, through _tasks) on a thread of its own, so the systems are written
concurrently; a step that needs another's result (the channels' opening messages name the tickets and invite the
paged people, each ticket names the other, every ticket gets every chat's transcript) runs in a later stage. Each
step is recorded in the incident's timeline with its real start, end and result; a step still running when the
phase's budget is spent is recorded as failed and left behind (every write is idempotent on the incident key, and
a write whose answer was lost is looked up before it is sent again, so the next phase catches it up exactly once).
"""

import errno
import fcntl
import hashlib
import os
import threading
import time

from ansible_collections.selfheal.devops.plugins.module_utils import _dynatrace_task, _jira_task, _oncall_task, _slack_task
from ansible_collections.selfheal.devops.plugins.module_utils import _servicenow_task, _teams_task
from ansible_collections.selfheal.devops.plugins.module_utils import _decisions, _tasks, _timeline
from ansible_collections.selfheal.devops.plugins.module_utils._problem import MARKER, OUTCOME_PREFIXES, STARTED_PREFIX
from ansible_collections.selfheal.devops.plugins.module_utils.servicenow import SEVERITY_MAP

PHASES = ("open", "update", "approve", "resolve", "escalate", "record")
TASKS = {"dynatrace": _dynatrace_task, "oncall": _oncall_task, "jira": _jira_task, "servicenow": _servicenow_task,
         "slack": _slack_task, "teams": _teams_task}
DESKS = ("jira", "servicenow")
CHATS = ("slack", "teams")
# The cross-links between the two desks: (step, system written, the other desk named in it).
LINKS = (("link servicenow", "jira", "servicenow"), ("link jira", "servicenow", "jira"))
TIMELINE_NOTE_RECORDS = 50
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

    def facts(self):
        problem = self.problem
        lines = ["Problem: %s" % self.title,
                 "Severity: %s, impact: %s" % (problem.get("severity") or "unknown", problem.get("impact") or "unknown"),
                 "Affected: %s" % (", ".join(e.get("name", "") for e in problem.get("entities") or []) or "not reported")]
        return lines

    def description(self):
        facts = self.facts()
        lines = ["Opened by **selfheal.devops** for Dynatrace problem %s." % self.link(), ""]
        lines += ["- " + line for line in facts] + ["- Incident key: `%s`" % self.key]
        if self.run_url:
            lines.append("- Remediation run: [%s](%s)" % (self.run_url, self.run_url))
        lines += ["", "The remediation, its verification and the outcome are added as comments; the timeline and the chat "
                  "transcripts are attached when the incident is resolved."]
        return "\n".join(lines)

    def plain_description(self):
        """The description as plain text (a ServiceNow description does not render Markdown)."""
        lines = ["Opened by selfheal.devops for Dynatrace problem %s%s." % (self.display, (" (%s)" % self.url) if self.url else ""), ""]
        lines += self.facts() + ["Incident key: %s" % self.key]
        if self.run_url:
            lines.append("Remediation run: %s" % self.run_url)
        lines += ["", "The remediation, its verification and the outcome are added as work notes; the timeline and the chat "
                  "transcripts are attached when the incident is resolved."]
        return "\n".join(lines)

    def opening(self, tickets=()):
        """The Slack channel's opening message (mrkdwn), naming the tickets known."""
        text = ":rotating_light: *%s*\nRemediation started by selfheal.devops." % self.summary
        if self.url:
            text += "\nDynatrace: " + self.url
        if tickets:
            text += "\n%s: %s" % ("Ticket" if len(tickets) == 1 else "Tickets",
                                  ", ".join(("<%s|%s>" % (t["url"], t["key"])) if t.get("url") else t["key"] for t in tickets))
        if self.run_url:
            text += "\nRun: " + self.run_url
        return text

    def teams_opening(self, tickets=()):
        """The Teams channel's opening message (Markdown as Teams renders it for bots), naming the tickets known."""
        lines = ["**%s**" % self.summary, "Remediation started by selfheal.devops."]
        if self.url:
            lines.append("Dynatrace: [%s](%s)" % (self.display, self.url))
        if tickets:
            lines.append("%s: %s" % ("Ticket" if len(tickets) == 1 else "Tickets",
                                     ", ".join(("[%s](%s)" % (t["key"], t["url"])) if t.get("url") else t["key"] for t in tickets)))
        if self.run_url:
            lines.append("Run: " + self.run_url)
        return "\n\n".join(lines)

    def topic(self, tickets=()):
        return (self.summary + "".join(" | " + t["key"] for t in tickets))[:250]

    def with_run(self, text):
        return text + ((" (%s)" % self.run_url) if self.run_url else "")


def timeline_markdown(key, records):
    lines = ["**Timeline** (%s)" % key, ""]
    for r in records:
        lines.append("- `%s` %s / %s / %s: **%s** (%s s)%s" % (
            r.get("time"), r.get("action"), r.get("step"), r.get("system"), r.get("result"), r.get("duration"),
            (" - " + str(r["detail"])) if r.get("detail") else ""))
    return "\n".join(lines)


def timeline_text(key, records, limit=TIMELINE_NOTE_RECORDS):
    """The timeline as plain text (a ServiceNow work note), its last `limit` records; the whole one is attached."""
    shown = records[-limit:]
    lines = ["Timeline (%s)%s:" % (key, (", the last %d of %d records; all of them are in the attached %s.json" % (
        len(shown), len(records), key)) if len(shown) < len(records) else "")]
    for r in shown:
        lines.append("%s %s / %s / %s: %s (%s s)%s" % (
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
        return bool(p[system]["enabled"])

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
        return steps

    def finish(self):
        """Wait, within the budget, for the steps still running; the ones that never answered are failures, as are
        those of a stage left early (with wait) that failed after it was left or before (each reported once)."""
        self._settle([s for s in self.steps if s.thread is not None])

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

    def servicenow(self, name, state, work_note=None, work_note_id=None, close_notes=None, attachments=None, quiet=False):
        """The ServiceNow incident's step: present (create or bring in step), updated, resolved."""
        if not self.enabled("servicenow"):
            return None
        sn = self.params["servicenow"]
        args = {"incident_key": self.key, "correlation_display": sn["correlation_display"], "state": state}
        if state == "present":
            severity = str(self.words.problem.get("severity") or "").upper()
            known = severity in SEVERITY_MAP or severity in (sn["severity_map"] or {})
            args.update(short_description=self.words.summary[:160], description=self.words.plain_description(),
                        severity=severity if known else None, severity_map=sn["severity_map"],
                        assignment_group=sn["assignment_group"] or None,
                        host=self.words.hosts[0] if self.words.hosts else None, fields=sn["fields"])
            if self.escalated():
                args["urgency"] = 1  # a human is needed now; kept by the later phases of the incident
        if work_note is not None:
            args.update(work_note=work_note, work_note_id=work_note_id)
        if state == "resolved":
            args.update(close_code=sn["close_code"], close_notes=close_notes, attachment_match="name")

        def work(incident):
            if attachments:
                # Each file once by name (a catch-up resolve's longer timeline does not come twice); only what exists.
                args["attachments"] = [a for a in attachments if os.path.isfile(a)]
            result = incident.call("servicenow", args)
            if result.get("failed"):
                return "failed", result.get("msg", "failed"), result
            view = result.get("incident") or {}
            with incident.lock:
                incident.found["servicenow"] = {"key": view.get("number"), "number": view.get("number"),
                                                "url": view.get("url"), "sys_id": view.get("sys_id"),
                                                "state": view.get("state_name")}
            detail = "%s %s" % (view.get("number"), view.get("state_name") or "")
            if result.get("attached"):
                detail += " +%d attached" % len(result["attached"])
            return ("changed" if result.get("changed") else "ok"), detail, result
        return Step(name, "servicenow", work, quiet=quiet)

    def escalated(self):
        return self.params["phase"] == "escalate" or any(r.get("action") == "escalate" for r in self.saved)

    def tickets(self):
        """The tickets known so far ({key, url}), Jira first."""
        return [dict(self.found[name]) for name in ("ticket", "servicenow") if (self.found.get(name) or {}).get("key")]

    def links(self):
        """The cross-link steps still to do: the ServiceNow number in the Jira ticket (a comment once) and the Jira key
        in the ServiceNow incident (a work note once), when both are known and the timeline has no such step yet."""
        jira, sn = self.found.get("ticket") or {}, self.found.get("servicenow") or {}
        if not (self.enabled("jira") and self.enabled("servicenow") and jira.get("key") and sn.get("number")):
            return []
        steps = []
        if not self.linked("link servicenow", "jira"):
            steps.append(self.ticket("link servicenow", "commented", comment="ServiceNow incident %s: %s" % (sn["number"], sn["url"]),
                                     comment_id=self.key + "-servicenow-link"))
        if not self.linked("link jira", "servicenow"):
            steps.append(self.servicenow("link jira", "updated", work_note="Jira ticket %s: %s" % (jira["key"], jira["url"]),
                                         work_note_id=self.key + "-jira-link"))
        return steps

    def linked(self, step, system):
        return any(r.get("step") == step and r.get("system") == system and r.get("result") in ("ok", "changed")
                   for r in self.saved)

    def channel(self, name, state, text=None, users=None, topic=None, blocks=None, message_id=None, transcript=None):
        if not self.enabled("slack"):
            return None
        slack = self.params["slack"]
        args = {"incident_key": self.key, "name_prefix": slack["channel_prefix"], "private": slack["private"],
                "state": state}

        def work(incident):
            call = dict(args)
            if state == "present":
                tickets = incident.tickets()
                call.update(text=text(tickets) if callable(text) else text, message_id=message_id,
                            blocks=blocks(incident) if callable(blocks) else blocks,
                            topic=topic(tickets) if callable(topic) else topic,
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

    def teams(self, name, state, text=None, members=False, description=None, message_id=None, transcript=None):
        """The Teams channel's step: present (find or create, add people, post once), transcript, closed."""
        if not self.enabled("teams"):
            return None
        teams = self.params["teams"]
        args = {"team": teams["team"], "incident_key": self.key, "name_prefix": teams["channel_prefix"],
                "membership_type": teams["membership_type"], "state": state}
        if state == "closed":
            args.update(close_action=teams["close_action"], closed_prefix=teams["closed_prefix"])

        def work(incident):
            call = dict(args)
            if state == "present":
                tickets = incident.tickets()
                call.update(text=text(tickets) if callable(text) else text, message_id=message_id, post_as=teams["post_as"],
                            description=description(tickets) if callable(description) else description,
                            owners=teams["owners"], members=incident.invitees("teams") if members else [])
            elif state == "transcript":
                call["transcript_path"] = transcript
            result = incident.call("teams", call)
            if result.get("failed"):
                return "failed", result.get("msg", "failed"), result
            channel = result.get("channel") or {}
            with incident.lock:
                incident.found["teams"] = dict(channel, message=result.get("message")) if channel else incident.found.get("teams")
            detail = channel.get("displayName") or ""
            if result.get("added"):
                detail += " +%d added" % len(result["added"])
            if result.get("message_count") is not None:
                detail += " %d messages" % result["message_count"]
            if channel.get("isArchived") and state == "closed":
                detail += " archived"
            return ("changed" if result.get("changed") else "ok"), detail, result
        return Step(name, "teams", work)

    def invitees(self, chat="slack"):
        """Who a chat brings in: its own list, and the people on call in the paged groups as <target>@<domain>."""
        settings = self.params[chat]
        people = list(settings["users"] if chat == "slack" else settings["members"])
        if settings["oncall_email_domain"]:
            for group in self.found.get("on_call") or []:
                for member in group.get("members") or []:
                    if member.get("target_name"):
                        people.append("%s@%s" % (member["target_name"], settings["oncall_email_domain"]))
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
        return [{"type": "section", "text": {"type": "mrkdwn", "text": self.words.opening(self.tickets())}},
                {"type": "actions", "block_id": "selfheal-%s" % self.key, "elements": elements}]

    def everywhere(self, name, message, slack_text=None, teams_text=None, comment_id=None, note_id=None, users=False):
        """The same news on both desks and in both chats (progress, approval, escalation)."""
        return [self.ticket(name, "present", comment=message, comment_id=comment_id),
                self.servicenow(name, "present", work_note=message, work_note_id=note_id or comment_id),
                self.channel(name, "present", text=slack_text or message,
                             users=(lambda incident: incident.invitees("slack")) if users else None),
                self.teams(name, "present", text=teams_text or message, members=users)]

    def pages_at_open(self):
        """oncall.page_policy: always (the default), or on_failure - a page only when a human is needed (approve mode
        at open; an escalation always pages)."""
        return self.params["oncall"]["page_policy"] == "always" or self.params["oncall"]["approve"]

    def paged(self):
        """Whether a page may be open: always with the always policy, else when the timeline shows one was sent."""
        return self.pages_at_open() or any(
            r.get("step") in ("page on-call", "escalate page") and r.get("result") != "failed" for r in self.saved)

    # phases ------------------------------------------------------------------------------------
    def open(self):
        # The channels name the tickets and invite the people paged: they wait for them, but not for a system that
        # does not answer (a channel then opens without that ticket's link; the ticket still comes, or is caught up
        # later). The desks name each other once both are known (here, or in a later phase).
        self.stage([self.comment("remediation started", "%s for %s" % (STARTED_PREFIX, self.words.summary)),
                    self.page("page on-call", "triggered") if self.pages_at_open() else None,
                    self.ticket("open ticket", "present"),
                    self.servicenow("open ticket", "present", work_note=self.words.with_run("Remediation started by selfheal.devops."),
                                    work_note_id=self.key + "-opened")], wait=self.params["request_timeout"])
        self.stage([self.channel("open channel", "present", text=self.words.opening, topic=self.words.topic,
                                 users=lambda incident: incident.invitees("slack"), blocks=lambda incident: incident.buttons(),
                                 message_id="opening"),
                    self.teams("open channel", "present", text=self.words.teams_opening, members=True,
                               description=self.words.topic, message_id="opening")] + self.links())
        self.finish()

    def update(self, message):
        digest = _digest(message)
        self.stage([self.comment("progress", message)] + self.everywhere(
            "progress", message, comment_id="%s-progress-%s" % (self.key, digest)))
        self.stage(self.links())

    def escalate(self, message):
        oncall = self.params["oncall"]
        text = "Automatic remediation did not fix it; escalated to a human. " + message
        self.stage([self.comment("escalated", "%s to a human: %s" % (ESCALATED, message)),
                    self.page("escalate page", "triggered", key=self.key + "-escalated",
                              groups=oncall["escalation_groups"] or oncall["groups"],
                              comment="Automatic remediation did not fix it: " + message)] + self.everywhere(
            "escalated", text, slack_text=":warning: " + text, teams_text="**Escalated**: " + text,
            comment_id="%s-escalated-%s" % (self.key, _digest(message)), users=True))
        self.stage(self.links())

    def resolve(self, message, fix_records):
        transcripts = {"slack": os.path.join(self.params["timeline_dir"], self.key + "-slack.md"),
                       "teams": os.path.join(self.params["timeline_dir"], self.key + "-teams.md")}
        self.stage([
            self.comment("resolved", "%s: %s" % (RESOLVED, message), close=self.params["dynatrace"]["close"]),
            self.page("resolve page", "resolved") if self.paged() else None,
            self.channel("outcome", "present", text=":white_check_mark: %s: %s" % (RESOLVED, message), message_id="resolved"),
            self.teams("outcome", "present", text="**%s**: %s" % (RESOLVED, message), message_id="resolved"),
            # Catch-up: a ticket is opened here when the open phase could not (its desk down, budget spent).
            self.ticket("open ticket", "present", quiet=True),
            self.servicenow("open ticket", "present", quiet=True)])
        # Each chat's transcript (after its outcome, so it is in it) for every ticket, and the cross-links.
        self.stage([self.channel("transcript", "transcript", transcript=transcripts["slack"]),
                    self.teams("transcript", "transcript", transcript=transcripts["teams"])] + self.links())
        timeline = self.save(fix_records + self.records("resolve"))
        self.steps = []
        files = [self.timeline_path] + [transcripts[chat] for chat in CHATS if self.enabled(chat)]
        text = "Resolved by selfheal.devops: %s" % message if message else "Resolved by selfheal.devops."
        self.stage([self.ticket("resolve ticket", "resolved", comment="%s\n\n%s" % (text, timeline_markdown(self.key, timeline)),
                                comment_id=self.key + "-resolved", attachments=files),
                    self.servicenow("resolve ticket", "resolved", close_notes=text, work_note=timeline_text(self.key, timeline),
                                    work_note_id=self.key + "-resolved", attachments=files),
                    self.channel("archive channel", "archived"),
                    self.teams("archive channel", "closed")])

    def approve(self, decision_dir, approve_response, answer=None):
        """Wait for the first answer (see await_answer, unless it was awaited already), then tell the tickets and the
        channels who decided."""
        if answer is None:
            answer = self.await_answer(decision_dir, approve_response)
        decided_by = (" by %s" % answer["responder"]) if answer.get("responder") else ""
        if answer.get("approved"):
            text = "Approved%s (%s, %s): running the fix." % (decided_by, answer.get("response"), answer.get("source"))
        else:
            text = "Not approved (%s%s): no automatic fix." % (answer.get("response"), decided_by)
        self.stage(self.everywhere("approval", text, comment_id="%s-approval" % self.key,
                                   slack_text=(":white_check_mark: " if answer.get("approved") else ":no_entry: ") + text))
        self.stage(self.links())
        return answer

    def await_answer(self, decision_dir, approve_response):
        """The first answer: a decision file written by an event source (callback or Slack button), or the xMatters
        page's first response; the first one wins, and is written down so every later one sees it. Recorded as the
        step "approval"; writes nothing else, so it needs no phase lock (a note or an escalation from chat goes on
        meanwhile)."""
        oncall = self.params["oncall"]
        step = Step("approval", oncall["provider"] or "approval", lambda incident: incident._wait(decision_dir, approve_response))
        self.stage([step])
        answer = step.data if step.data else {}
        if not answer:
            answer = {"approved": False, "response": "no_response", "responder": "", "source": ""}
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
