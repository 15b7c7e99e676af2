# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable, bounded state of the Dynatrace event source. Private to the collection; not a source.

What was last handed to the rulebook per problem (status, fingerprint), plus small metadata (the last poll).
The working copy lives in memory, so deciding costs a dict lookup; the durable copy is an SQLite database in
WAL mode written by one writer thread that commits whatever accumulated in one transaction (group commit), so
saving is off the intake path and one save does not grow with the number of problems. Closed problems are
pruned after a retention period, from the database and from memory.

Start-up is strict: the state file's folder is created (0700) and a write is made before the source listens,
so an unwritable path fails the activation at once with a message naming the file. A file in the 0.1 JSON
format is migrated; a corrupt file is moved aside with a warning; a database of another application is refused.
"""

import concurrent.futures
import json
import logging
import os
import queue as queue_module
import sqlite3
import threading
import time

LOGGER = logging.getLogger("selfheal.devops.state")

SCHEMA_VERSION = "1"
SQLITE_MAGIC = b"SQLite format 3\x00"
PRUNE_EVERY = 600.0
_STOP = object()
_SAVED = concurrent.futures.Future()
_SAVED.set_result(True)


class StateError(ValueError):
    """The state file cannot be used; raised at start, before anything listens."""


class ProblemStore(object):
    """Per-problem records in memory, with a durable SQLite copy when a path is given.

    Records are dicts {status, fingerprint, display_id, seen}. put() changes memory at once; persist() returns
    a concurrent.futures.Future that resolves to True once every change made before it is committed to disk
    (or at once without a path), False when the write failed (the change stays in memory and is retried).
    """

    def __init__(self, path=None, retention=7 * 86400, clock=time.time):
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        self.retention = float(retention)
        self.clock = clock
        self.problems = {}
        self.meta = {}
        self.dirty = set()
        self.write_errors = 0
        self._lock = threading.Lock()
        self._inbox = queue_module.Queue()
        self._writer = None
        self._last_prune = clock()
        if self.path:
            self._open()

    # --- memory ---------------------------------------------------------------------------------
    def get(self, pid):
        return self.problems.get(pid)

    def put(self, pid, record):
        with self._lock:
            self.problems[pid] = record
            self.dirty.add(pid)

    def forget(self, pid):
        with self._lock:
            self.problems.pop(pid, None)
            self.dirty.add(pid)

    def set_meta(self, key, value):
        with self._lock:
            self.meta[key] = value
            self.dirty.add(("meta", key))

    def open_ids(self):
        return [pid for pid, record in list(self.problems.items()) if record.get("status") == "OPEN"]

    def prune(self):
        """Forget closed problems older than the retention (memory and, through the writer, the database)."""
        cutoff = self.clock() - self.retention
        with self._lock:
            old = [pid for pid, record in self.problems.items()
                   if record.get("status") == "CLOSED" and record.get("seen", 0) < cutoff]
            for pid in old:
                del self.problems[pid]
                self.dirty.discard(pid)
        self._last_prune = self.clock()
        if self._writer is not None:
            self._inbox.put(("prune", cutoff, None))
        return len(old)

    # --- durability -----------------------------------------------------------------------------
    @property
    def durable(self):
        """True when changes are saved to a state file (persist() then waits for the writer)."""
        return self._writer is not None

    def persist(self):
        """Commit every pending change; a Future resolving to True (saved) or False (write failed)."""
        if self.clock() - self._last_prune > PRUNE_EVERY:
            self.prune()
        if self._writer is None:
            with self._lock:
                self.dirty.clear()
            return _SAVED  # nothing to write: the same resolved future every time
        future = concurrent.futures.Future()
        with self._lock:
            changes = {}
            for key in self.dirty:
                if isinstance(key, tuple):
                    changes[key] = self.meta.get(key[1])
                else:
                    changes[key] = self.problems.get(key)
            self.dirty.clear()
        self._inbox.put(("save", changes, future))
        return future

    def close(self):
        if self._writer is not None and self._writer.is_alive():
            self._inbox.put(_STOP)
            self._writer.join(10)

    # --- the database ---------------------------------------------------------------------------
    def _open(self):
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError("cannot create the folder of state_file %s: %s" % (self.path, exc.strerror or exc))
        legacy = self._inspect()
        ready = threading.Event()
        failure = []
        self._writer = threading.Thread(target=self._write_loop, args=(ready, failure, legacy),
                                        name="selfheal-state", daemon=True)
        self._writer.start()
        ready.wait()
        if failure:
            self._writer.join(5)
            self._writer = None
            raise failure[0]

    def _inspect(self):
        """Look at an existing file: None (new or ours), or the records of a 0.1 JSON state file to migrate."""
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return None
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(16)
        except OSError as exc:
            raise StateError("cannot read state_file %s: %s" % (self.path, exc.strerror or exc))
        if head == SQLITE_MAGIC:
            return None
        try:
            with open(self.path) as handle:
                saved = json.load(handle)
        except (OSError, ValueError, UnicodeDecodeError):
            saved = None
        if isinstance(saved, dict) and isinstance(saved.get("problems"), dict):
            aside = self._move_aside("json-0.1")
            LOGGER.warning("state_file %s was in the 0.1 JSON format: migrated to SQLite (original kept as %s)",
                           self.path, aside)
            return saved
        aside = self._move_aside("corrupt")
        LOGGER.warning("state_file %s is neither a selfheal state database nor a 0.1 JSON state file; moved aside "
                       "to %s and starting with empty state (open problems are re-evaluated once)", self.path, aside)
        return None

    def _move_aside(self, why):
        aside = "%s.%s-%d" % (self.path, why, int(self.clock()))
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise StateError("cannot move state_file %s aside: %s" % (self.path, exc.strerror or exc))
        return aside

    def _connect(self):
        created = not os.path.exists(self.path)
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        if created:
            os.chmod(self.path, 0o600)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _prepare(self, conn, legacy):
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "selfheal_problems" not in tables:
            raise StateError("state_file %s is an SQLite database of something else (tables: %s); choose another path"
                             % (self.path, ", ".join(sorted(tables))))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS selfheal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS selfheal_problems (id TEXT PRIMARY KEY, status TEXT NOT NULL, "
                     "fingerprint TEXT NOT NULL, display_id TEXT, seen REAL NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO selfheal_meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        conn.execute("INSERT OR REPLACE INTO selfheal_meta VALUES ('opened_at', ?)", (json.dumps(self.clock()),))
        if legacy:
            rows = [(str(pid), str(r.get("status", "OPEN")), str(r.get("fingerprint", "")), r.get("display_id"),
                     float(r.get("seen", 0) or 0)) for pid, r in legacy["problems"].items() if isinstance(r, dict)]
            conn.executemany("INSERT OR REPLACE INTO selfheal_problems VALUES (?, ?, ?, ?, ?)", rows)
            if legacy.get("last_poll") is not None:
                conn.execute("INSERT OR REPLACE INTO selfheal_meta VALUES ('last_poll', ?)",
                             (json.dumps(legacy["last_poll"]),))
        conn.execute("COMMIT")
        version = conn.execute("SELECT value FROM selfheal_meta WHERE key='schema_version'").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StateError("state_file %s has schema version %s; this collection reads %s" % (self.path, version, SCHEMA_VERSION))
        for pid, status, fingerprint, display_id, seen in conn.execute("SELECT * FROM selfheal_problems"):
            self.problems[pid] = {"status": status, "fingerprint": fingerprint, "display_id": display_id, "seen": seen}
        for key, value in conn.execute("SELECT key, value FROM selfheal_meta WHERE key NOT IN ('schema_version', 'opened_at')"):
            try:
                self.meta[key] = json.loads(value)
            except ValueError:
                LOGGER.warning("state_file %s: unreadable value for %s ignored", self.path, key)

    def _write_loop(self, ready, failure, legacy):
        try:
            try:
                conn = self._connect()
                self._prepare(conn, legacy)
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                aside = self._move_aside("corrupt")
                LOGGER.warning("state_file %s is a damaged database (%s); moved aside to %s, starting empty",
                               self.path, exc, aside)
                conn = self._connect()
                self._prepare(conn, None)
        except StateError as exc:
            failure.append(exc)
            ready.set()
            return
        except (sqlite3.Error, OSError) as exc:
            failure.append(StateError("state_file %s is not usable: %s" % (self.path, exc)))
            ready.set()
            return
        ready.set()
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _serve(self, conn):
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < 1000:
                try:
                    item = self._inbox.get_nowait()
                except queue_module.Empty:
                    break
                if item is _STOP:
                    self._commit(conn, batch)
                    return
                batch.append(item)
            self._commit(conn, batch)

    def _commit(self, conn, batch):
        changes, prune_before, futures = {}, None, []
        for kind, payload, future in batch:
            if kind == "save":
                changes.update(payload)
                futures.append(future)
            else:
                prune_before = payload
        ok = True
        try:
            meta, gone, rows = [], [], []  # each key once per batch: the three statements touch different rows
            for key, record in changes.items():
                if isinstance(key, tuple):
                    meta.append((key[1], json.dumps(record)))
                elif record is None:
                    gone.append((key,))
                else:
                    rows.append((key, record["status"], record["fingerprint"], record.get("display_id"), record["seen"]))
            conn.execute("BEGIN IMMEDIATE")
            if meta:
                conn.executemany("INSERT OR REPLACE INTO selfheal_meta VALUES (?, ?)", meta)
            if gone:
                conn.executemany("DELETE FROM selfheal_problems WHERE id = ?", gone)
            if rows:
                conn.executemany("INSERT OR REPLACE INTO selfheal_problems VALUES (?, ?, ?, ?, ?)", rows)
            if prune_before is not None:
                conn.execute("DELETE FROM selfheal_problems WHERE status = 'CLOSED' AND seen < ?", (prune_before,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            ok = False
            self.write_errors += 1
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            with self._lock:  # keep the changes pending: the next persist() tries them again
                self.dirty.update(changes.keys())
            LOGGER.error("state_file %s: saving failed (%s); the change is kept in memory and saved again with the "
                         "next one (answering 503 until it is saved)", self.path, exc)
        for future in futures:
            if not future.cancelled():  # its waiter may have gone (the source was stopped): nothing to tell it
                try:
                    future.set_result(ok)
                except concurrent.futures.InvalidStateError:
                    pass
