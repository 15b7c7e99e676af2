"""The Dynatrace source's state file on a real, tiny, full tmpfs: a notification is never lost.

While the state cannot be written, notifications are still handed to the rules engine, and each is answered 503
(so the sender retries) until its state is saved; a retry is then answered 202 and emits nothing twice.
"""

import asyncio
import json
import os
import sqlite3
import subprocess

import aiohttp
import pytest

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace as source

TOKEN = "disk-token"
HEADERS = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}


def notification(number, state="OPEN"):
    return {"PID": "-%019d_1V2" % number, "ProblemID": "P-%d" % number, "State": state, "ProblemTitle": "Disk full " + "x" * 200,
            "ImpactedEntities": [{"type": "HOST", "name": "web-01", "entity": "HOST-%016X" % number}]}


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True, check=False).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path):
    """Fill the filesystem of path; return the filler file."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_under_the_state_file_loses_no_notification(tiny_disk, run_source):
    state_file = str(tiny_disk / "state.db")
    running = await run_source(source.main, {"token": TOKEN, "path": "/dynatrace/problems", "state_file": state_file})
    url = running.base + "/dynatrace/problems"
    async with aiohttp.ClientSession() as session:
        async def send(body):
            async with session.post(url, data=json.dumps(body), headers=HEADERS) as response:
                return response.status, await response.json()

        assert (await send(notification(0)))[0] == 202
        assert len(running.events()) == 1
        filler = fill(str(tiny_disk))
        answers = [await send(notification(n)) for n in range(1, 41)]
        # Every one of them reached the rules engine, even though none could be saved ...
        assert sorted(int(e["problem"]["display_id"][2:]) for e in running.events()) == list(range(1, 41))
        # ... and the answers say so: at least the last ones are 503 (delivered, not yet saved).
        assert all(status in (202, 503) for status, dummy in answers) and answers[-1][0] == 503
        assert all(body["status"] == "delivered" for status, body in answers if status == 503)
        # The sender retries while the disk is full: still 503, and nothing is emitted twice.
        status, body = await send(notification(40))
        assert status == 503 and running.events() == []
        os.unlink(filler)
        retries = [await send(notification(n)) for n in range(1, 41)]
        assert {status for status, dummy in retries} == {202}
        assert {body["status"] for dummy, body in retries} == {"duplicate"}
        assert running.events() == []
    with sqlite3.connect(state_file) as conn:
        saved = {row[0] for row in conn.execute("SELECT display_id FROM selfheal_problems")}
    assert saved == {"P-%d" % n for n in range(41)}


async def test_a_full_disk_at_start_fails_the_activation_clearly(tiny_disk):
    fill(str(tiny_disk))
    with pytest.raises(source.webhook.ConfigError) as info:
        await source.main(asyncio.Queue(1), {"token": TOKEN, "reconcile": False, "state_file": str(tiny_disk / "state.db")})
    assert str(tiny_disk / "state.db") in str(info.value)
