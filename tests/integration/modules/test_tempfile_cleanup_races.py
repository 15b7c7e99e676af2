"""tempfile_cleanup running as root against an unprivileged attacker who races it (issue 21 items 1 and 11).

The attacker is a real process running as `nobody` for a bounded time. It owns a directory above the root (an
application owning /var/tmp/app, root at .../app/work/cache) or inside it, and swaps a directory for a symlink to
root-owned data in a loop while the module runs again and again, in streaming and in target mode. Count of files
lost outside the root: zero. Every run either cleans the real root or refuses cleanly (never a traceback).
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _tempfiles as tf

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                                reason="needs root (the module's situation) and a system python for the attacker")

RACE_SECONDS = 12
MAX_RUNS = 400
PRECIOUS = 40
# What a run refused during the race says (the path was a symlink, or missing, when it was opened).
CLEAR_REFUSALS = ("passes through a symlink", "does not exist", "changed while it was opened")

# The attacker: swap PATH (a directory it owns) for a symlink to TARGET and back, until STOP exists or time is up.
RACER = r"""
import os, sys, time
path, target, stop, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
aside = path + ".real"
ready = path + ".ready"
open(ready, "w").close()
end = time.monotonic() + seconds
swaps = 0
while time.monotonic() < end and swaps < 10000000:
    if swaps % 64 == 0 and os.path.exists(stop):
        break
    os.rename(path, aside)
    os.symlink(target, path)
    os.unlink(path)
    os.rename(aside, path)
    swaps += 1
print(swaps)
"""


@pytest.fixture
def arena():
    """A directory nobody can enter (0755) on the root filesystem, removed afterwards without following links."""
    base = tempfile.mkdtemp(prefix="selfheal-race-", dir="/var/tmp")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def precious_tree(base):
    """Root-only data outside every allowed root: secret/cache/*.db (0600 files in a 0700 tree), all old."""
    cache = os.path.join(base, "secret", "cache")
    os.makedirs(cache)
    os.chmod(os.path.join(base, "secret"), 0o700)
    old = time.time() - 30 * 86400
    paths = []
    for number in range(PRECIOUS):
        path = os.path.join(cache, "precious%02d.db" % number)
        with open(path, "wb") as handle:
            handle.write(b"p" * 100)
        os.chmod(path, 0o600)
        os.utime(path, (old, old))
        paths.append(path)
    return paths


def refill(cache_fd, count=20):
    """Old files in the real root, created through its descriptor (the path may be a symlink right now)."""
    old = time.time() - 30 * 86400
    for number in range(count):
        name = "junk%02d.tmp" % number
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=cache_fd)
        os.write(fd, b"j" * 50)
        os.close(fd)
        os.utime(name, (old, old), dir_fd=cache_fd, follow_symlinks=False)


def start_racer(base, path, target):
    script = os.path.join(base, "racer.py")
    with open(script, "w") as handle:
        handle.write(RACER)
    os.chmod(script, 0o644)
    stop = os.path.join(base, "stop")
    nobody = pwd.getpwnam("nobody")
    process = subprocess.Popen(["runuser", "-u", "nobody", "--", "/usr/bin/python3", script, path, target, stop, str(RACE_SECONDS)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(path + ".ready"):  # the racer is running as nobody (it made this file)
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    assert os.stat(path + ".ready").st_uid == nobody.pw_uid
    return process, stop


def stop_racer(process, stop):
    open(stop, "w").close()
    out, err = process.communicate(timeout=RACE_SECONDS + 30)
    assert process.returncode == 0, err
    return int(out.strip())


def race(base, root, allowed, mode_params, precious, swapped, target):
    """Run the module logic as root over and over while nobody swaps `swapped` for a symlink to `target`."""
    cache_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    process, stop = start_racer(base, swapped, target)
    runs = refused = deleted = 0
    try:
        end = time.monotonic() + RACE_SECONDS - 2
        while time.monotonic() < end and runs < MAX_RUNS and process.poll() is None:
            refill(cache_fd)
            params = {"paths": [root], "allowed_roots": [allowed], "allow_protected_roots": [], "patterns": ["*"],
                      "excludes": [], "age": "1d", "age_stamp": "mtime", "min_size": "0", "target_free_percent": None,
                      "target_free_bytes": None, "remove_empty_dirs": False, "one_file_system": True,
                      "skip_open_files": False, "max_files": 0, "sample_size": 5, "usage_only": False}
            params.update(mode_params)
            try:
                result, dummy = tf.clean(params, False)
            except tf.Refused as exc:
                refused += 1
                assert any(reason in str(exc) for reason in CLEAR_REFUSALS), exc
            else:
                deleted += result["deleted"]
                assert all(path.startswith(root + "/") for path in result["sample"]), result["sample"]
            runs += 1
    finally:
        swaps = stop_racer(process, stop)
        os.close(cache_fd)
    lost = [path for path in precious if not os.path.exists(path)]
    return {"runs": runs, "refused": refused, "deleted": deleted, "swaps": swaps, "lost": lost}


@pytest.mark.parametrize("mode", [{}, {"target_free_bytes": "1000T"}], ids=["streaming", "target"])
def test_directory_above_the_root_swapped_for_a_symlink_redirects_nothing(arena, mode):
    """Item 1: nobody owns app/; root is app/work/cache; app/work is swapped for a symlink to secret/."""
    precious = precious_tree(arena)
    app = os.path.join(arena, "app")
    root = os.path.join(app, "work", "cache")
    os.makedirs(root)
    nobody = pwd.getpwnam("nobody")
    for path in (app, os.path.join(app, "work")):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    outcome = race(arena, root, app, mode, precious, os.path.join(app, "work"), os.path.join(arena, "secret"))
    assert outcome["lost"] == [], outcome
    # The race really ran: many swaps, the module ran many times and cleaned the real root in some of them.
    assert outcome["swaps"] > 100 and outcome["runs"] >= 20 and outcome["deleted"] > 0, outcome


@pytest.mark.parametrize("mode", [{}, {"target_free_bytes": "1000T"}], ids=["streaming", "target"])
def test_directory_inside_the_root_swapped_for_a_symlink_redirects_nothing(arena, mode):
    """A subdirectory of the root owned by nobody, swapped for a symlink to secret/ while the walk runs."""
    precious = precious_tree(arena)
    root = os.path.join(arena, "tmp", "cache")
    inner = os.path.join(root, "cache")
    os.makedirs(inner)
    nobody = pwd.getpwnam("nobody")
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    os.chown(inner, nobody.pw_uid, nobody.pw_gid)
    outcome = race(arena, root, os.path.join(arena, "tmp"), mode, precious, inner, os.path.join(arena, "secret", "cache"))
    assert outcome["lost"] == [], outcome
    assert outcome["swaps"] > 100 and outcome["runs"] >= 20 and outcome["deleted"] > 0, outcome


def test_the_real_module_under_the_race_refuses_or_cleans_never_escapes(arena, playbook):
    """Item 1 and 11 through real ansible-playbook: a few module runs during the swap loop; each one cleans the real root
    or fails with a clear refusal, never with a traceback; nothing outside is lost."""
    precious = precious_tree(arena)
    app = os.path.join(arena, "app")
    root = os.path.join(app, "work", "cache")
    os.makedirs(root)
    nobody = pwd.getpwnam("nobody")
    for path in (app, os.path.join(app, "work")):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    cache_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    refill(cache_fd)
    process, stop = start_racer(arena, os.path.join(app, "work"), os.path.join(arena, "secret"))
    try:
        args = {"paths": [root], "allowed_roots": [app], "age": "1d"}
        tasks = [dict(name="run%d" % number, ignore_errors=True, **{"selfheal.devops.tempfile_cleanup": dict(args, **extra)})
                 for number, extra in enumerate([{}, {"target_free_bytes": "1000T"}] * 3)]
        run = playbook(tasks)
    finally:
        stop_racer(process, stop)
        os.close(cache_fd)
    assert "Traceback" not in run.stdout + run.stderr
    for number in range(6):
        result = run["run%d" % number]
        if result.get("failed"):
            assert result["refused"] and any(reason in result["msg"] for reason in CLEAR_REFUSALS), result
        else:
            assert all(path.startswith(root + "/") for path in result["sample"]), result
    assert [path for path in precious if not os.path.exists(path)] == []


if __name__ == "__main__":  # pragma: no cover - a manual run against another implementation
    sys.exit(pytest.main([__file__, "-x", "-q"]))
