# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The first answer to an incident, kept in a folder on the controller. Private to the selfheal.devops collection.

The event sources that receive answers (oncall_callback: xMatters and PagerDuty responses; slack_actions: buttons and
slash commands) write them here as they arrive; the incident orchestrator, waiting in approve mode, reads the folder
every 0.1 s, so an answer counts at once, whoever gives it. The first answer wins: it is written whole, then linked
into place (a link fails when the answer exists), and a later one finds it and is told who decided. A used answer
is kept under another name for the record. Standard library only: the event sources import it inside ansible-rulebook.
"""

import json
import os
import time


def decision_path(directory, key):
    return os.path.join(directory, "%s.decision.json" % key)


def write(directory, key, decision):
    """Record the incident's answer unless one is there already; returns (the answer that counts, whether it is ours).

    decision: {source (xmatters, pagerduty, slack), response or action, responder, time (epoch seconds)}.
    Raises OSError when the folder cannot be written.
    """
    os.makedirs(directory, 0o700, exist_ok=True)
    path = decision_path(directory, key)
    decision = dict(decision)
    decision.setdefault("time", time.time())
    # Written whole under a private name, then linked into place: link() fails when the answer is there already, and
    # nobody ever reads a half-written answer (a loser reading an empty file would find no answer and no way in).
    temporary = "%s.%d.%d.tmp" % (path, os.getpid(), id(decision))
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(decision, handle)
        try:
            os.link(temporary, path)
        except FileExistsError:
            existing = read(directory, key, 0)
            if existing is None:
                raise
            return existing, False
    finally:
        os.unlink(temporary)
    return decision, True


def read(directory, key, since):
    """The answer recorded for the incident at or after `since` (epoch seconds; 5 s of clock slack), or None."""
    if not directory:
        return None
    try:
        with open(decision_path(directory, key)) as handle:
            decision = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(decision, dict) or float(decision.get("time") or 0) < since - 5:
        return None
    return decision


def consume(directory, key):
    """Keep a used answer under another name, so a later approval of the incident waits anew."""
    path = decision_path(directory, key)
    try:
        os.rename(path, "%s.%d" % (path, int(time.time() * 1000)))
    except OSError:
        pass


def describe(decision):
    return "%s by %s (%s)" % (decision.get("response") or decision.get("action"), decision.get("responder") or "someone",
                              decision.get("source"))
