"""selfheal.devops.dynatrace: delivery, durable state and hardening, each case a named test.

Every source here runs against the queue ansible-rulebook really gives it (asyncio.Queue(1), drained one event at
a time by a rules engine that may be slow or stopped), over real HTTP on 127.0.0.1.
"""

import asyncio
import copy
import json
import os
import socket
import sqlite3
import threading
import time

import aiohttp
import pytest

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _state, _webhook
from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace as source

TOKEN = "webhook-token-123"
AUTH = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
PID = "-6156404735398726308_1669823466223V2"
NOTIFICATION = {
    "ProblemID": "P-1234", "PID": PID, "ProblemTitle": "Process crashed", "State": "OPEN",
    "ProblemSeverity": "AVAILABILITY", "ProblemImpact": "INFRASTRUCTURE",
    "ImpactedEntities": [{"type": "HOST", "name": "web-01", "entity": "HOST-E371A974A078CC54"},
                         {"type": "SERVICE", "name": "checkout", "entity": "SERVICE-1A2B3C4D5E6F7A8B"}],
    "Tags": "app:checkout, env:prod",
}


def notification(number, state="OPEN"):
    return dict(NOTIFICATION, PID="-%019d_1V2" % number, ProblemID="P-%d" % number, State=state)


async def post(base, body=None, raw=None, headers=None, session=None):
    data = raw if raw is not None else json.dumps(body).encode()
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.post(base + "/dynatrace/problems", data=data, headers=AUTH if headers is None else headers) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text.startswith("{") else text), response.headers
    finally:
        if own:
            await session.close()


def args(tmp_path=None, **extra):
    result = {"token": TOKEN, "path": "/dynatrace/problems"}
    if tmp_path is not None:
        result["state_file"] = str(tmp_path / "state.db")
    result.update(extra)
    return result


# --- delivery -------------------------------------------------------------------------------------

async def test_300_distinct_problems_from_16_senders_all_reach_a_slow_rules_engine(run_source, rules_engine):
    engine = rules_engine(delay=0.002)
    running = await run_source(source.main, args(), engine=engine)
    todo = list(range(300))
    statuses = []
    async with aiohttp.ClientSession() as session:
        async def sender():
            while todo:
                number = todo.pop()
                for dummy in range(20):  # a sender retries a 503, as Dynatrace does
                    status, dummy_body, dummy_headers = await post(running.base, notification(number), session=session)
                    statuses.append(status)
                    if status != 503:
                        break
                    await asyncio.sleep(0.05)

        await asyncio.gather(*[sender() for dummy in range(16)])
    events = running.events()
    assert sorted(e["problem"]["display_id"] for e in events) == sorted("P-%d" % n for n in range(300))
    assert statuses.count(202) == 300


async def test_a_stopped_rules_engine_gets_503_and_the_retry_is_delivered_not_a_duplicate(run_source, rules_engine):
    engine = rules_engine()
    engine.pause()
    running = await run_source(source.main, args(handoff_timeout=0.3), engine=engine)
    assert (await post(running.base, notification(1)))[0] == 202  # the queue holds one
    status, answer, headers = await post(running.base, notification(2))
    assert status == 503 and headers["Retry-After"] == "5" and answer["status"] == "retry"
    engine.resume()
    status, answer, dummy = await post(running.base, notification(2))
    # Accepted, or a duplicate when the source's own attempt at what it kept handed it over first.
    assert status == 202 and answer["status"] in ("accepted", "duplicate")
    await wait_for(lambda: len(running.engine.received) + running.queue.qsize() >= 2)
    await asyncio.sleep(source.BACKLOG_PAUSE + 0.5)  # the kept copy's next attempt: a duplicate now, nothing sent
    assert [e["problem"]["display_id"] for e in running.events()] == ["P-1", "P-2"]


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_503_never_retried_is_delivered_by_the_source_once_there_is_room(run_source, rules_engine, caplog):
    engine = rules_engine()
    engine.pause()
    running = await run_source(source.main, args(handoff_timeout=0.2), engine=engine)
    assert (await post(running.base, notification(1)))[0] == 202  # the queue holds one
    refused = await asyncio.gather(*[post(running.base, notification(n)) for n in (2, 3, 4)])
    assert [r[0] for r in refused] == [503] * 3 and all(r[1]["kept"] for r in refused), refused
    assert "kept, and handed over as soon as there is room" in caplog.text
    await asyncio.sleep(0.5)  # still no room: kept, tried again, not lost
    async with aiohttp.ClientSession() as session:
        async with session.get(running.base + "/dynatrace/problems/health") as response:
            assert (await response.json())["kept"] == 3
    engine.resume()
    await wait_for(lambda: len(running.engine.received) + running.queue.qsize() >= 4)
    await asyncio.sleep(source.BACKLOG_PAUSE + 0.5)
    assert sorted(e["problem"]["display_id"] for e in running.events()) == ["P-1", "P-2", "P-3", "P-4"]
    async with aiohttp.ClientSession() as session:
        async with session.get(running.base + "/dynatrace/problems/health") as response:
            assert (await response.json())["kept"] == 0
    # The sender's late retries are duplicates: nothing is emitted twice.
    for number in (2, 3, 4):
        status, answer, dummy = await post(running.base, notification(number))
        assert (status, answer["status"]) == (202, "duplicate")
    assert running.events() == []


async def test_a_kept_open_made_stale_by_the_resolved_is_never_emitted(run_source, rules_engine):
    engine = rules_engine()
    engine.pause()
    running = await run_source(source.main, args(handoff_timeout=0.2), engine=engine)
    assert (await post(running.base, notification(1)))[0] == 202
    assert (await post(running.base, notification(2)))[0] == 503  # OPEN kept
    assert (await post(running.base, notification(2, "RESOLVED")))[0] == 503  # the newer RESOLVED replaces it
    engine.resume()
    await wait_for(lambda: len(running.engine.received) + running.queue.qsize() >= 2)
    await asyncio.sleep(source.BACKLOG_PAUSE + 0.5)
    events = running.events()
    assert [(e["problem"]["display_id"], e["transition"]) for e in events] == [("P-1", "opened"), ("P-2", "closed")]


async def test_a_full_backlog_leaves_the_rest_to_the_senders_retry(run_source, rules_engine, caplog):
    engine = rules_engine()
    engine.pause()
    running = await run_source(source.main, args(handoff_timeout=0.2, max_pending=2), engine=engine)
    assert (await post(running.base, notification(1)))[0] == 202
    answers = [await post(running.base, notification(n)) for n in (2, 3, 4)]
    assert [a[0] for a in answers] == [503] * 3
    assert [a[1].get("kept", False) for a in answers] == [True, True, False]
    assert "depends on the sender's retry" in caplog.text
    engine.resume()
    await wait_for(lambda: len(running.engine.received) + running.queue.qsize() >= 3)
    await asyncio.sleep(source.BACKLOG_PAUSE + 0.5)
    assert sorted(e["problem"]["display_id"] for e in running.events()) == ["P-1", "P-2", "P-3"]
    assert (await post(running.base, notification(4)))[1]["status"] == "accepted"  # the retry is delivered


async def test_the_same_problem_delivered_twice_at_once_is_emitted_once(run_source, rules_engine):
    engine = rules_engine(delay=0.05)
    running = await run_source(source.main, args(), engine=engine)
    results = await asyncio.gather(*[post(running.base, NOTIFICATION) for dummy in range(20)])
    assert sorted(r[1]["status"] for r in results) == ["accepted"] + ["duplicate"] * 19
    await asyncio.sleep(0.1)
    assert len(running.events()) == 1


async def test_resolved_half_a_second_after_opened_is_delivered(run_source, tmp_path):
    running = await run_source(source.main, args(tmp_path))
    await post(running.base, NOTIFICATION)
    await asyncio.sleep(0.5)
    await post(running.base, dict(NOTIFICATION, State="RESOLVED"))
    assert [e["transition"] for e in running.events()] == ["opened", "closed"]


# --- durable state --------------------------------------------------------------------------------

async def test_an_unwritable_state_path_fails_at_start_naming_the_file(tmp_path, rules_engine):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "state.db").mkdir()  # a directory where the database should be: never writable, even as root
    with pytest.raises(_webhook.ConfigError) as info:
        await source.main(asyncio.Queue(1), args(state_file=str(locked / "state.db"), reconcile=False))
    assert str(locked / "state.db") in str(info.value)


async def test_the_state_folder_is_created(tmp_path, run_source):
    path = tmp_path / "var" / "lib" / "selfheal" / "state.db"
    running = await run_source(source.main, args(state_file=str(path)))
    await post(running.base, NOTIFICATION)
    assert path.exists()


@pytest.mark.parametrize("content", [b"[]", b"{not json", b"\x00\x01garbage", b'{"problems": []}'])
async def test_a_corrupt_state_file_is_moved_aside_with_a_warning(tmp_path, run_source, content, caplog):
    path = tmp_path / "state.db"
    path.write_bytes(content)
    running = await run_source(source.main, args(tmp_path))
    status, answer, dummy = await post(running.base, NOTIFICATION)
    assert status == 202 and answer["transition"] == "opened"
    kept = [p for p in os.listdir(str(tmp_path)) if p.startswith("state.db.corrupt-")]
    assert len(kept) == 1 and (tmp_path / kept[0]).read_bytes() == content
    assert "moved aside" in caplog.text


async def test_a_foreign_sqlite_database_is_refused(tmp_path):
    with sqlite3.connect(str(tmp_path / "state.db")) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(_webhook.ConfigError) as info:
        await source.main(asyncio.Queue(1), args(tmp_path, reconcile=False))
    assert "SQLite database of something else" in str(info.value) and "customers" in str(info.value)


async def test_a_json_state_file_of_version_0_1_is_migrated(tmp_path, run_source):
    legacy = {"problems": {PID: {"status": "OPEN", "fingerprint": "x"}}, "last_poll": 1700000000000}
    (tmp_path / "state.db").write_text(json.dumps(legacy))
    running = await run_source(source.main, args(tmp_path))
    status, answer, dummy = await post(running.base, dict(NOTIFICATION, State="RESOLVED"))
    assert answer["transition"] == "closed"  # it knew the problem as open
    assert [p for p in os.listdir(str(tmp_path)) if p.startswith("state.db.json-0.1-")]


def test_closed_problems_are_pruned_after_the_retention(tmp_path):
    now = [1000000.0]
    store = _state.ProblemStore(str(tmp_path / "state.db"), retention=3600, clock=lambda: now[0])
    try:
        store.put("old", {"status": "CLOSED", "fingerprint": "a", "display_id": "P-1", "seen": now[0] - 7200})
        store.put("open", {"status": "OPEN", "fingerprint": "b", "display_id": "P-2", "seen": now[0] - 7200})
        store.put("recent", {"status": "CLOSED", "fingerprint": "c", "display_id": "P-3", "seen": now[0] - 60})
        assert store.persist()
        now[0] += _state.PRUNE_EVERY + 1
        assert store.persist()  # a save after PRUNE_EVERY prunes, in memory and on disk
        assert set(store.problems) == {"open", "recent"}
    finally:
        store.close()
    with sqlite3.connect(str(tmp_path / "state.db")) as conn:
        assert {row[0] for row in conn.execute("SELECT id FROM selfheal_problems")} == {"open", "recent"}


def test_saving_does_not_grow_with_the_number_of_known_problems(tmp_path):
    store = _state.ProblemStore(str(tmp_path / "state.db"))
    try:
        for number in range(20000):
            store.put("p%d" % number, {"status": "CLOSED", "fingerprint": "f", "display_id": None, "seen": time.time()})
        assert store.persist()
        started = time.perf_counter()
        for number in range(50):
            store.put("new%d" % number, {"status": "OPEN", "fingerprint": "f", "display_id": None, "seen": time.time()})
            assert store.persist()
        per_save = (time.perf_counter() - started) / 50
    finally:
        store.close()
    assert per_save < 0.02, per_save  # one changed row per save, not the whole state (was 52 ms at 10,000)


def test_saves_from_two_threads_all_land_and_checkpoints_reach_the_database_file(tmp_path):
    path = str(tmp_path / "state.db")
    store = _state.ProblemStore(path)
    try:
        empty_size = os.path.getsize(path)

        def save(prefix):
            for number in range(500):
                store.put("%s%d" % (prefix, number), {"status": "OPEN", "fingerprint": "f", "display_id": None,
                                                      "seen": time.time()})
                assert store.persist()

        threads = [threading.Thread(target=save, args=(prefix,)) for prefix in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Saves append to the WAL; the checkpoint thread, not a save, copies them into the database file.
        deadline = time.monotonic() + 10 * _state.CHECKPOINT_EVERY
        while os.path.getsize(path) <= empty_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) > empty_size
    finally:
        store.close()
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0  # checkpointed at close
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM selfheal_problems").fetchone()[0] == 1000


def test_a_save_never_commits_older_changes_after_newer_ones(tmp_path):
    """Thread A gathers its changes, then is held up before it reaches the database; meanwhile thread B changes the
    same problem and saves. A must not then write its older copy over B's."""
    path = str(tmp_path / "state.db")
    store = _state.ProblemStore(path)
    b_saved = threading.Event()
    real_lock = store._db_lock

    class HeldUpFirstTime(object):  # A's first wait for the database lasts until B saved (or 2 s, if B cannot)
        held = False

        def __enter__(self):
            if not HeldUpFirstTime.held and threading.current_thread().name == "A":
                HeldUpFirstTime.held = True
                b_saved.wait(2)
            return real_lock.__enter__()

        def __exit__(self, *exc):
            return real_lock.__exit__(*exc)

    store._db_lock = HeldUpFirstTime()

    def a():
        store.put("P1", {"status": "OPEN", "fingerprint": "old", "display_id": None, "seen": 1.0})
        assert store.persist()

    def b():
        store.put("P1", {"status": "CLOSED", "fingerprint": "new", "display_id": None, "seen": 2.0})
        assert store.persist()
        b_saved.set()

    try:
        first = threading.Thread(target=a, name="A")
        first.start()
        while not HeldUpFirstTime.held:
            time.sleep(0.001)
        second = threading.Thread(target=b, name="B")
        second.start()
        first.join(10)
        second.join(10)
    finally:
        store._db_lock = real_lock
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT status, fingerprint FROM selfheal_problems WHERE id = 'P1'").fetchone() == ("CLOSED", "new")


# --- hardening ------------------------------------------------------------------------------------

@pytest.mark.parametrize("details, field", [
    ({"impactedEntities": {"entityId": "HOST-1"}}, "impactedEntities"),
    ({"affectedEntities": "HOST-1"}, "affectedEntities"),
    ({"managementZones": {"name": "prod"}}, "managementZones"),
    ({"managementZones": ["prod"]}, "managementZones"),
    ({"entityTags": "app:x"}, "entityTags"),
    ({"evidenceDetails": {"details": {"x": 1}}}, "evidenceDetails.details"),
    ({"evidenceDetails": []}, "evidenceDetails"),
    ({"rootCauseEntity": "HOST-1"}, "rootCauseEntity"),
    ({"startTime": "yesterday"}, "startTime"),
])
async def test_wrong_types_inside_problem_details_are_400(run_source, details, field):
    running = await run_source(source.main, args())
    status, answer, dummy = await post(running.base, dict(NOTIFICATION, ProblemDetailsJSONv2=details))
    assert status == 400 and field in answer["error"], answer
    assert running.events() == []


@pytest.mark.parametrize("change, field", [
    ({"ProblemSeverity": {"level": "AVAILABILITY"}}, "ProblemSeverity"),
    ({"ProblemTitle": ["a"]}, "ProblemTitle"),
    ({"State": ["OPEN"]}, "State"),
    ({"PID": True}, "PID"),
    ({"ImpactedEntities": [{"type": "HOST", "name": {"x": 1}, "entity": "HOST-1"}]}, "name"),
])
async def test_unchecked_values_never_reach_the_event(run_source, change, field):
    running = await run_source(source.main, args())
    status, answer, dummy = await post(running.base, dict(NOTIFICATION, **change))
    assert status == 400 and field in answer["error"] and running.events() == []


@pytest.mark.parametrize("raw", [
    b'{"PID": NaN, "State": "OPEN"}', b'{"PID": "1", "State": "OPEN", "x": Infinity}', b'{"PID": "1", "State": "OPEN", "x": -Infinity}'])
async def test_nan_and_infinity_are_400(run_source, raw):
    running = await run_source(source.main, args())
    status, answer, dummy = await post(running.base, raw=raw)
    assert status == 400 and "not valid JSON" in answer["error"] and running.events() == []


async def test_100000_nested_arrays_are_400(run_source):
    running = await run_source(source.main, args())
    raw = b'{"PID": "1", "State": "OPEN", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    status, answer, dummy = await post(running.base, raw=raw)
    assert status == 400 and "nested" in answer["error"]
    deep = {"PID": "1", "State": "OPEN", "x": json.loads("[" * 100 + "]" * 100)}
    status, answer, dummy = await post(running.base, deep)
    assert status == 400 and "nested" in answer["error"] and running.events() == []


async def test_a_non_ascii_byte_in_authorization_is_401_not_500(run_source):
    running = await run_source(source.main, args())
    host, port = running.base.split("//")[1].split(":")
    body = json.dumps(NOTIFICATION).encode()
    request = (b"POST /dynatrace/problems HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe" + TOKEN.encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"401" and running.events() == []


async def test_the_same_entities_in_another_order_are_a_duplicate(run_source):
    running = await run_source(source.main, args())
    await post(running.base, NOTIFICATION)
    reordered = dict(NOTIFICATION, ImpactedEntities=list(reversed(NOTIFICATION["ImpactedEntities"])))
    status, answer, dummy = await post(running.base, reordered)
    assert answer["status"] == "duplicate" and len(running.events()) == 1


async def test_an_open_after_resolved_never_reopens_the_problem(run_source, tmp_path):
    running = await run_source(source.main, args(tmp_path))
    await post(running.base, NOTIFICATION)
    await post(running.base, dict(NOTIFICATION, State="RESOLVED"))
    status, answer, dummy = await post(running.base, NOTIFICATION)  # Dynatrace's late retry of the OPEN
    assert status == 202 and answer["status"] == "stale"
    assert [e["transition"] for e in running.events()] == ["opened", "closed"]


def signed(secret, body, stamp, prefix="v0:"):
    return _webhook.signature(secret, (prefix + str(stamp) + ":").encode() + body)


async def test_hmac_with_a_signed_timestamp_refuses_replays_and_stale_requests(run_source):
    running = await run_source(source.main, {"path": "/dynatrace/problems", "hmac_secret": "k3y", "hmac_header": "X-Sig",
                                             "hmac_timestamp_header": "X-Stamp", "hmac_message_prefix": "v0:",
                                             "replay_window": 60})
    opened = json.dumps(NOTIFICATION).encode()
    stamp = int(time.time())
    headers = {"X-Sig": signed("k3y", opened, stamp), "X-Stamp": str(stamp), "Content-Type": "application/json"}
    assert (await post(running.base, raw=opened, headers=headers))[0] == 202
    resolved = json.dumps(dict(NOTIFICATION, State="RESOLVED")).encode()
    assert (await post(running.base, raw=resolved, headers={
        "X-Sig": signed("k3y", resolved, stamp + 1), "X-Stamp": str(stamp + 1), "Content-Type": "application/json"}))[0] == 202
    status, answer, dummy = await post(running.base, raw=opened, headers=headers)  # captured OPEN replayed
    assert status == 401 and "replayed" in answer["error"]
    old = stamp - 3600
    status, answer, dummy = await post(running.base, raw=opened, headers={
        "X-Sig": signed("k3y", opened, old), "X-Stamp": str(old), "Content-Type": "application/json"})
    assert status == 401 and "replay window" in answer["error"]
    status, answer, dummy = await post(running.base, raw=opened, headers={
        "X-Sig": signed("k3y", opened, stamp), "X-Stamp": str(stamp + 5), "Content-Type": "application/json"})
    assert status == 401 and "signature" in answer["error"]  # the timestamp is signed: it cannot be changed
    assert [e["transition"] for e in running.events()] == ["opened", "closed"]


async def test_idle_and_slow_clients_are_disconnected_and_capped(run_source):
    running = await run_source(source.main, args(idle_timeout=0.5, max_connections=20))
    host, port = running.base.split("//")[1].split(":")
    slow = []
    for dummy in range(40):  # unauthenticated, sending their headers one byte at a time, or nothing at all
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"POST /dynatrace/pro")
        slow.append(sock)
    # A real delivery still gets through while they hold their connections ...
    deadline = time.monotonic() + 10
    while True:
        try:
            status, dummy_answer, dummy = await post(running.base, NOTIFICATION)
            break
        except aiohttp.ClientError:
            assert time.monotonic() < deadline, "deliveries starved by slow clients"
            await asyncio.sleep(0.1)
    assert status == 202
    # ... and every slow client is disconnected within the idle timeout (plus scheduling slack).
    await asyncio.sleep(1.5)
    closed = 0
    for sock in slow:
        sock.settimeout(2)
        try:
            closed += sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            closed += 1
        sock.close()
    assert closed == 40


async def test_a_body_that_never_finishes_is_408(run_source):
    running = await run_source(source.main, args(body_timeout=0.5))
    host, port = running.base.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /dynatrace/problems HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"408"


# --- Dynatrace's own EDA payload shape --------------------------------------------------------------

async def test_a_davis_problem_event_from_dynatrace_workflows_is_accepted(run_source):
    running = await run_source(source.main, args())
    body = {"eventData": {"event.id": "-7_1V2", "display_id": "P-2601137", "event.name": "Process unavailable",
                          "event.status": "ACTIVE", "event.category": "AVAILABILITY",
                          "affected_entity_ids": ["HOST-E371A974A078CC54", "PROCESS_GROUP_INSTANCE-1"],
                          "host.name": ["web-01"], "entity_tags": ["process:web"], "event.start": 1700000000000}}
    status, answer, dummy = await post(running.base, body)
    assert status == 202 and answer["transition"] == "opened"
    (event,) = running.events()
    assert event["incident_key"] == "dt-P-2601137" and event["meta"]["hosts"] == ["web-01"]
    assert event["problem"]["severity"] == "AVAILABILITY" and event["problem"]["tags"] == {"process": "web"}
    closed = copy.deepcopy(body)
    closed["eventData"]["event.status"] = "CLOSED"
    status, answer, dummy = await post(running.base, closed)
    assert answer["transition"] == "closed"


# --- a closed problem whose incident this collection resolved ------------------------------------------------------

class CommentsReader(object):
    """The one reader call resolved_check makes: the problem's comments (or an error, or no answer at all)."""

    def __init__(self, comments=(), error=None, hang=False):
        self.comments_of, self.error, self.hang, self.asked = list(comments), error, hang, []

    async def comments(self, pid):
        self.asked.append(pid)
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return self.comments_of


def intake_with(reader, timeout=1.0):
    events = []

    async def deliver(event):
        events.append(event)
        return True

    tracker = source.ProblemTracker(_state.ProblemStore())
    return source.Intake(tracker, deliver, resolved=source.resolved_check(reader, timeout)), events


def observed(status):
    return {"id": "P1", "status": status, "title": "Process unavailable", "entities": []}


@pytest.mark.parametrize("reader, flagged", [
    (CommentsReader([{"content": "[selfheal.devops] Remediation started"}, {"content": "[selfheal.devops] Resolved: web restarted"}]), True),
    (CommentsReader([{"content": "[selfheal.devops] Escalated to a human: crash loop"}]), False),  # a human still owns it
    (CommentsReader([{"content": "Resolved by hand"}]), False),  # not this collection's comment
    (CommentsReader(error=RuntimeError("Dynatrace answered 503")), False),  # cannot tell: the closing rule runs
    (CommentsReader(hang=True), False),
], ids=["resolved", "escalated", "foreign", "unreadable", "hanging"])
async def test_a_closed_event_says_when_this_collection_resolved_its_incident(reader, flagged):
    intake, events = intake_with(reader, timeout=0.2)
    assert (await intake.observe(observed("OPEN"), {}, "webhook"))[0] == 202
    assert reader.asked == []  # only a closing asks
    status, answer = await intake.observe(observed("CLOSED"), {}, "webhook")
    assert status == 202 and answer["transition"] == "closed" and reader.asked == ["P1"]
    assert [e.get("incident_resolved", False) for e in events] == [False, flagged]


async def test_a_problem_closed_while_down_is_judged_by_the_comments_reconciliation_listed():
    reader = CommentsReader(error=AssertionError("read although reconciliation listed the comments"))
    intake, events = intake_with(reader)
    comments = [{"content": "[selfheal.devops] Remediation started"}, {"content": "[selfheal.devops] Resolved: web restarted"}]
    raw = {"recentComments": {"totalCount": 2, "comments": comments}}
    assert (await intake.observe(observed("CLOSED"), raw, "webhook", "close"))[0] == 202
    assert [(e["transition"], e.get("reconciled"), e.get("incident_resolved")) for e in events] == [("closed", True, True)]


async def test_comments_the_problem_carries_in_full_are_not_read_again():
    reader = CommentsReader(error=AssertionError("read although the problem carried its comments"))
    raw = {"recentComments": {"totalCount": 1, "comments": [{"content": "[selfheal.devops] Resolved: fixed"}]}}
    assert await source.own_steps(reader, "P1", raw) == {"resolved"}
    partial = {"recentComments": {"totalCount": 3, "comments": [{"content": "x"}]}}
    with pytest.raises(AssertionError):
        await source.own_steps(reader, "P1", partial)  # some are missing: read them all


async def test_a_kept_closing_reads_the_comments_once_however_many_attempts_it_takes():
    reader = CommentsReader([{"content": "[selfheal.devops] Resolved: web restarted"}])
    room, events = [], []

    async def deliver(event):  # no room for the first three attempts at the closing
        if event["transition"] == "closed" and len(room) < 3:
            room.append(event)
            return False
        events.append(event)
        return True

    intake = source.Intake(source.ProblemTracker(_state.ProblemStore()), deliver,
                           resolved=source.resolved_check(reader, 1.0), backlog=4)
    assert (await intake.observe(observed("OPEN"), {}, "webhook"))[0] == 202
    status, answer = await intake.observe(observed("CLOSED"), {}, "webhook")
    assert status == 503 and answer["kept"]
    await wait_for(lambda: len(events) == 2, timeout=source.BACKLOG_PAUSE * 3 + 5)
    assert [(e["transition"], e.get("incident_resolved", False)) for e in events] == [("opened", False), ("closed", True)]
    assert reader.asked == ["P1"] and len(room) == 3  # three attempts without room, one read of the comments
