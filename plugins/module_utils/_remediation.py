# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The blast-radius rules of a remediation, and the controller's record of remediations. Private to selfheal.devops.

decide() is pure: given the problem, the inventory and the limits, it says whether the fix may run by itself,
needs a human's approval first, cannot run at all (a human must act), or must not run (closed, or another run owns
the incident). RemediationStore keeps, in one SQLite database on the controller, the leases (one live run per
incident) and the fixes made per host and per service, so limits hold across concurrent runs: every check-and-record
is one `BEGIN IMMEDIATE` transaction.
"""

import json
import os
import socket
import sqlite3
import time

FIX, APPROVE, ESCALATE, SKIP = "fix", "approve", "escalate", "skip"


def problem_hosts(problem):
    hosts = []
    for entity in problem.get("entities") or []:
        if isinstance(entity, dict) and entity.get("type") == "HOST" and entity.get("name") not in hosts:
            hosts.append(entity.get("name"))
    return [h for h in hosts if h]


def resolve_hosts(named, inventory, aliases=None):
    """({name: inventory host}, [names not resolved]) for the host names a problem gives.

    A name is the inventory host of that name; else the host aliases maps it to (Dynatrace's name for a host the
    inventory calls otherwise; keys compared without regard to case, as DNS names are); else the one inventory host
    whose name differs from it only in case. Nothing else is guessed: not a short name for a long one, and a name
    that two inventory hosts could answer to (in case only) is not resolved.
    """
    aliases = dict((str(k).lower(), v) for k, v in (aliases or {}).items())
    folded = {}
    for host in inventory:
        folded.setdefault(host.lower(), []).append(host)
    resolved, unresolved = {}, []
    for name in named:
        if name in inventory:
            resolved[name] = name
        elif name.lower() in aliases and aliases[name.lower()] in inventory:
            resolved[name] = aliases[name.lower()]
        elif len(folded.get(name.lower(), ())) == 1:
            resolved[name] = folded[name.lower()][0]
        else:
            unresolved.append(name)
    return resolved, unresolved


def decide(problem, inventory, mode="auto", targets=None, max_hosts=10, over_budget=None, aliases=None):
    """(decision, targets, reason, unresolved, renamed) for one incident: unresolved, the names given that are no
    inventory host; renamed, {name given: inventory host} for the names resolved to a host of another name.

    targets: an explicit target list (for fixes that do not run on the problem's hosts, e.g. a router); by default the
    problem's HOST entities. Only inventory hosts can be targets: a name is resolved to one by resolve_hosts (aliases:
    {other name: inventory host}) or not at all, never guessed.
    over_budget: callable(targets) -> reason or None, consulted only for automatic fixes.
    """
    if str(problem.get("status", "OPEN")).upper() == "CLOSED":
        return SKIP, [], "Dynatrace already closed the problem; nothing to fix", [], {}
    named = list(targets) if targets is not None else problem_hosts(problem)
    resolved, unknown = resolve_hosts(named, inventory, aliases)
    known = []
    for name in named:
        if name in resolved and resolved[name] not in known:
            known.append(resolved[name])
    decision, reason = _decision(named, known, unknown, mode, max_hosts, over_budget)
    renamed = dict((name, host) for name, host in resolved.items() if name != host)
    if renamed and decision != ESCALATE:
        reason += " (%s)" % ", ".join("%s is %s" % (name, host) for name, host in renamed.items())
    return decision, known, reason, unknown, renamed


def _decision(named, known, unknown, mode, max_hosts, over_budget):
    if not known:
        if not named:
            return ESCALATE, "the problem names no host to fix (no HOST entity); a human must decide where to act"
        return ESCALATE, ("no host the problem names is in the inventory (%s; other names: selfheal_host_aliases); a "
                          "human must decide where to act" % ", ".join(unknown))
    note = (" (not in the inventory, left alone: %s)" % ", ".join(unknown)) if unknown else ""
    if len(known) > max_hosts:
        return APPROVE, "%d hosts exceed the automatic limit of %d (selfheal_max_hosts)%s" % (len(known), max_hosts, note)
    if mode == "approve":
        return APPROVE, "approve mode: the fix waits for the on-call engineer's answer" + note
    reason = over_budget(known) if over_budget else None
    if reason:
        return APPROVE, reason + note
    return FIX, "automatic fix on %s%s" % (", ".join(known), note)


# --- who runs: the ansible-playbook process that owns a lease --------------------------------------

def _stat_start(pid):
    """The start time of a process (clock ticks since boot), or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def run_owner(pid=None):
    """The running ansible-playbook process above this module, as {host, pid, start}.

    Walks up the process tree to the outermost ansible-playbook (its per-task workers are forks with the same command
    line, and end with the task); a lease held by an owner whose process is gone (kill -9, a container that died) is
    stale and may be taken over.
    """
    pid = pid or os.getppid()
    chosen = pid
    for dummy in range(16):
        if pid <= 1:
            break
        if "ansible-playbook" in _cmdline(pid):
            chosen = pid
        try:
            with open("/proc/%d/stat" % pid) as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return {"host": socket.gethostname(), "pid": chosen, "start": _stat_start(chosen)}


def owner_alive(owner):
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return True  # another machine's run: only its expiry tells
    start = _stat_start(int(owner.get("pid") or 0))
    return start is not None and start == owner.get("start")


class RemediationStore(object):
    """Leases and fix records in one SQLite database (WAL); each operation is one immediate transaction."""

    def __init__(self, path, clock=time.time, create=True):
        """create=False (check mode): a database that does not exist yet is not created; an empty one in memory
        answers instead, as the new file would."""
        self.path = path
        self.clock = clock
        created = not os.path.exists(path)
        if created and not create:
            path = ":memory:"
        else:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                os.makedirs(folder, 0o700)
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        if created and create:
            os.chmod(path, 0o600)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS leases (incident TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                          "acquired REAL NOT NULL, expires REAL NOT NULL)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS fixes (key TEXT NOT NULL, incident TEXT NOT NULL, time REAL NOT NULL)")
        self.conn.execute("CREATE INDEX IF NOT EXISTS fixes_by_key ON fixes (key, time)")

    def close(self):
        self.conn.close()

    def transaction(self):
        return _Immediate(self.conn)

    def lease_holder(self, incident, owner):
        """The live owner of another run holding the incident, or None (free, expired, ours, or its run is gone)."""
        row = self.conn.execute("SELECT owner, expires FROM leases WHERE incident = ?", (incident,)).fetchone()
        if row is None:
            return None
        held = json.loads(row[0])
        if held == owner or row[1] < self.clock() or not owner_alive(held):
            return None
        return held

    def take_lease(self, incident, owner, ttl):
        now = self.clock()
        self.conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)", (incident, json.dumps(owner), now, now + ttl))

    def release(self, incident, owner):
        """Release the incident's lease if this run (or a dead one) holds it; True when a lease was removed."""
        row = self.conn.execute("SELECT owner FROM leases WHERE incident = ?", (incident,)).fetchone()
        if row is None:
            return False
        held = json.loads(row[0])
        if held != owner and owner_alive(held) and self.lease_holder(incident, owner) is not None:
            return False
        self.conn.execute("DELETE FROM leases WHERE incident = ?", (incident,))
        return True

    def count(self, key, window, incident=None):
        """Fixes recorded for key within the window (not counting the given incident's own)."""
        since = self.clock() - window
        return self.conn.execute("SELECT COUNT(*) FROM fixes WHERE key = ? AND time >= ? AND incident != ?",
                                 (key, since, incident or "")).fetchone()[0]

    def already_recorded(self, key, incident):
        return self.conn.execute("SELECT 1 FROM fixes WHERE key = ? AND incident = ?", (key, incident)).fetchone() is not None

    def record(self, keys, incident):
        now = self.clock()
        for key in keys:
            if not self.already_recorded(key, incident):
                self.conn.execute("INSERT INTO fixes VALUES (?, ?, ?)", (key, incident, now))

    def prune(self, older_than):
        self.conn.execute("DELETE FROM fixes WHERE time < ?", (self.clock() - older_than,))
        self.conn.execute("DELETE FROM leases WHERE expires < ?", (self.clock(),))


class _Immediate(object):
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, value, traceback):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
        return False
