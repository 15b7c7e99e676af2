# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable, bounded state of the Dynatrace event source. Private to the collection; not a source.

What was last handed to the rulebook per problem (status, fingerprint), plus small metadata (the last poll).
The working copy lives in memory, so deciding costs a dict lookup; the durable copy is an SQLite database in
WAL mode. A save commits what changed since the last one (the callers group every notification of one turn of
their event loop into one save), so a save costs one small transaction (about 30 us) whatever the number of known
problems, and is made where it is asked for: handing each save to a writer thread and back cost three times as
much CPU as the commit itself. The WAL is checkpointed (the only writes that wait for the disk) by a thread of its
own, never by a save. Closed problems are pruned after a retention period, from the database and from memory.

Start-up is strict: the state file's folder is created (0700) and a write is made before the source listens,
so an unwritable path fails the activation at once with a message naming the file. A file in the 0.1 JSON
format is migrated; a corrupt file is moved aside with a warning; a database of another application is refused.
"""

import json
import logging
import os
import sqlite3
import threading
import time

LOGGER = logging.getLogger("selfheal.devops.state")

SCHEMA_VERSION = "1"
SQLITE_MAGIC = b"SQLite format 3\x00"
PRUNE_EVERY = 600.0
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints (on the checkpoint thread)
ROWS_PER_STATEMENT = 100  # problems written by one INSERT (5 parameters each; SQLite allows 32,766)


def _insert_rows(count):
    """INSERT OR REPLACE of `count` problem rows in one statement (sqlite3 caches the compiled statements)."""
    return "INSERT OR REPLACE INTO selfheal_problems VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * count)


class StateError(ValueError):
    """The state file cannot be used; raised at start, before anything listens."""


class ProblemStore(object):
    """Per-problem records in memory, with a durable SQLite copy when a path is given.

    Records are dicts {status, fingerprint, display_id, seen}. put() changes memory at once; persist() commits every
    change made before it: True once saved (at once without a path), False when the write failed (the changes stay
    pending and are saved with the next persist()).
    Thread-safe: notifications and reconciliation may save from different threads.
    """

    def __init__(self, path=None, retention=7 * 86400, clock=time.time):
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        self.retention = float(retention)
        self.clock = clock
        self.problems = {}
        self.meta = {}
        self.dirty = set()
        self.write_errors = 0
        self._lock = threading.Lock()      # memory: problems, meta, dirty
        self._db_lock = threading.Lock()   # the connection: one transaction at a time
        self._conn = None
        self._prune_before = None
        self._last_prune = clock()
        self._stopping = threading.Event()
        self._checkpointer = None
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
        """Forget closed problems older than the retention (memory now, the database with the next save)."""
        cutoff = self.clock() - self.retention
        with self._lock:
            old = [pid for pid, record in self.problems.items()
                   if record.get("status") == "CLOSED" and record.get("seen", 0) < cutoff]
            for pid in old:
                del self.problems[pid]
                self.dirty.discard(pid)
            if self._conn is not None:
                self._prune_before = cutoff
        self._last_prune = self.clock()
        return len(old)

    # --- durability -----------------------------------------------------------------------------
    @property
    def durable(self):
        """True when changes are saved to a state file."""
        return self._conn is not None

    def persist(self):
        """Commit every pending change: True once saved (at once without a state file), False when the write failed
        (the changes stay pending and are saved with the next persist())."""
        if self.clock() - self._last_prune > PRUNE_EVERY:
            self.prune()
        if self._conn is None:
            with self._lock:
                self.dirty.clear()
            return True
        # Gathered and committed under one lock: a save that gathered older changes never commits after a newer one.
        with self._db_lock:
            if self._conn is None:  # closed meanwhile (the source is stopping): nothing more is saved
                return False
            with self._lock:
                changes = {}
                for key in self.dirty:
                    changes[key] = self.meta.get(key[1]) if isinstance(key, tuple) else self.problems.get(key)
                self.dirty.clear()
                prune_before, self._prune_before = self._prune_before, None
            if not changes and prune_before is None:
                return True
            try:
                self._commit(changes, prune_before)
            except sqlite3.Error as exc:
                self.write_errors += 1
                with self._lock:  # keep the changes pending: the next persist() tries them again
                    self.dirty.update(changes)
                    if prune_before is not None and self._prune_before is None:
                        self._prune_before = prune_before
                LOGGER.error("state_file %s: saving failed (%s); the change is kept in memory and saved again with "
                             "the next one (answering 503 until it is saved)", self.path, exc)
                return False
        return True

    def close(self):
        self._stopping.set()
        if self._checkpointer is not None and self._checkpointer.is_alive():
            self._checkpointer.join(10)
        with self._db_lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    LOGGER.warning("state_file %s: final checkpoint failed (%s); the WAL file keeps the changes",
                                   self.path, exc)
                self._conn.close()
                self._conn = None

    # --- the database ---------------------------------------------------------------------------
    def _open(self):
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError("cannot create the folder of state_file %s: %s" % (self.path, exc.strerror or exc))
        legacy = self._inspect()
        try:
            try:
                self._conn = self._prepare(self._connect(), legacy)
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                aside = self._move_aside("corrupt")
                LOGGER.warning("state_file %s is a damaged database (%s); moved aside to %s, starting empty",
                               self.path, exc, aside)
                self._conn = self._prepare(self._connect(), None)
        except (sqlite3.Error, OSError) as exc:
            raise StateError("state_file %s is not usable: %s" % (self.path, exc))
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="selfheal-state-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

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
        # Saves come from the threads of the source's event loops, one at a time (the store's lock).
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        if created:
            os.chmod(self.path, 0o600)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # a commit appends to the WAL; only checkpoints wait for the disk
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on their own thread, never within a save
        return conn

    def _prepare(self, conn, legacy):
        """Create or check the schema, migrate a 0.1 file, load the records; return conn (closed on failure)."""
        try:
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
        except BaseException:
            conn.close()
            raise
        return conn

    def _commit(self, changes, prune_before):
        meta, gone, rows = [], [], []  # each key once per save: the three statements touch different rows
        for key, record in changes.items():
            if isinstance(key, tuple):
                meta.append((key[1], json.dumps(record)))
            elif record is None:
                gone.append((key,))
            else:
                rows.append((key, record["status"], record["fingerprint"], record.get("display_id"), record["seen"]))
        conn = self._conn
        if rows and not meta and not gone and prune_before is None and len(rows) <= ROWS_PER_STATEMENT:
            # The usual save (new or changed problems): one statement is one transaction and one call into SQLite,
            # which releases the GIL once instead of three times (each release lets another thread in first).
            conn.execute(_insert_rows(len(rows)), [value for row in rows for value in row])
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if meta:
                conn.executemany("INSERT OR REPLACE INTO selfheal_meta VALUES (?, ?)", meta)
            if gone:
                conn.executemany("DELETE FROM selfheal_problems WHERE id = ?", gone)
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start:start + ROWS_PER_STATEMENT]
                conn.execute(_insert_rows(len(chunk)), [value for row in chunk for value in row])
            if prune_before is not None:
                conn.execute("DELETE FROM selfheal_problems WHERE status = 'CLOSED' AND seen < ?", (prune_before,))
            conn.execute("COMMIT")
        except sqlite3.Error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _checkpoint_loop(self):
        """Copy the WAL into the database every CHECKPOINT_EVERY seconds, on a connection of this thread."""
        try:
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        except sqlite3.Error as exc:
            LOGGER.warning("state_file %s: no checkpoint thread (%s); the WAL is checkpointed at close", self.path, exc)
            return
        failing = False
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    failing = False
                except sqlite3.Error as exc:
                    if not failing:  # once per failing stretch, not once a second
                        LOGGER.warning("state_file %s: checkpoint failed (%s); retrying", self.path, exc)
                    failing = True
        finally:
            conn.close()
