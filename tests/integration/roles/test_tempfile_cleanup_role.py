"""roles/tempfile_cleanup on a real, nearly full tmpfs: check mode predicts the real run, odd file names do not break
the role, a refused policy deletes nothing and still sets tempfile_cleanup_result (issue 21 items 4, 6, 8, 10)."""

import os
import subprocess
import time

import pytest

DAY = 86400
MIB = 1024 * 1024


@pytest.fixture
def disk(tmp_path):
    """A private 8 MiB tmpfs (needs root and mount), skipped where mounting is not allowed."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % result.stderr.decode().strip())
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def write(path, size, age):
    path = os.fsencode(str(path)) if not isinstance(path, bytes) else path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def fill(disk):
    """About 80 % used: ten 512 KiB old files (one with a non-UTF-8 name), two fresh ones, an old lock file."""
    app = disk / "app-tmp"
    old = [write(app / ("cache/%02d.bin" % number), 512 * 1024, (30 - number) * 3600 + DAY) for number in range(9)]
    old.append(write(os.fsencode(str(app)) + b"/cache/caf\xe9-latin1.bin", 512 * 1024, DAY + 1800))
    young = [write(app / ("uploads/%d.bin" % number), 512 * 1024, 60) for number in range(2)]
    lock = write(app / "cache" / "app.lock", 64 * 1024, 3 * DAY)
    return app, old, young, lock


def role(variables):
    return [
        {"name": "run the role", "block": [
            {"name": "cleanup", "ansible.builtin.include_role": {"name": "selfheal.devops.tempfile_cleanup"}, "vars": variables},
        ], "rescue": [
            {"name": "failure", "ansible.builtin.set_fact": {"role_error": "{{ ansible_failed_result.msg | default('') }}"}},
        ]},
        {"name": "result", "ansible.builtin.debug": {"msg": {
            "result": "{{ tempfile_cleanup_result | default(None) }}", "error": "{{ role_error | default('') }}"}}},
    ]


def outcome(run):
    assert "result" in run.results, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    return run["result"]["msg"]


def role_vars(disk, app, **extra):
    variables = {"tempfile_cleanup_paths": [str(app)], "tempfile_cleanup_allowed_roots": [str(disk)],
                 "tempfile_cleanup_threshold_percent": 50, "tempfile_cleanup_target_free_percent": 60,
                 "tempfile_cleanup_age": "1d", "tempfile_cleanup_excludes": ["*.lock"]}
    variables.update(extra)
    return variables


def used_percent(path):
    vfs = os.statvfs(str(path))
    return 100.0 * (vfs.f_blocks - vfs.f_bfree) / (vfs.f_blocks - vfs.f_bfree + vfs.f_bavail)


def test_check_mode_predicts_the_real_run_and_odd_names_come_back(playbook, disk):
    app, old, young, lock = fill(disk)
    assert used_percent(disk) > 50
    check = outcome(playbook(role(role_vars(disk, app)), check=True))
    assert check["error"] == "" and all(os.path.exists(path) for path in old)
    real = outcome(playbook(role(role_vars(disk, app))))
    assert real["error"] == "", real
    predicted, result = check["result"], real["result"]
    assert result["ran"] and result["target_met"] and predicted["target_met"]
    for key in ("deleted", "bytes_freed"):
        assert int(predicted[key]) == int(result[key]) > 0, (key, predicted, result)
    assert abs(float(predicted["used_percent_after"]) - float(result["used_percent_after"])) < 0.5
    assert float(result["usage_after"]["used_percent"]) <= 40  # the target: 60 % free
    gone = [path for path in old if not os.path.exists(path)]
    assert gone == old[:len(gone)]  # oldest first (the list is oldest to newest)
    assert all(os.path.exists(path) for path in young) and os.path.exists(lock)
    # Nothing was deleted beyond the target: one more file would not have been needed.
    vfs = os.statvfs(str(disk))
    assert (vfs.f_bavail * vfs.f_frsize - 512 * 1024) < 0.6 * (vfs.f_blocks - vfs.f_bfree + vfs.f_bavail) * vfs.f_frsize


def test_non_utf8_name_does_not_break_the_role(playbook, disk):
    app = disk / "app-tmp"
    names = [write(os.fsencode(str(app)) + b"/bad-\xff-%d.bin" % number, 600 * 1024, 2 * DAY) for number in range(8)]
    assert used_percent(disk) > 50
    result = outcome(playbook(role(role_vars(disk, app, tempfile_cleanup_target_free_percent=0))))
    assert result["error"] == "" and int(result["result"]["deleted"]) == 8, result
    assert not any(os.path.exists(path) for path in names)


def test_refused_policy_deletes_nothing_and_says_why(playbook, disk):
    app, old, young, lock = fill(disk)
    result = outcome(playbook(role(role_vars(disk, app, tempfile_cleanup_excludes=[str(app / "cache" / "keep.bin")]))))
    assert "is absolute" in result["error"] and "excludes match a name or a path relative" in result["error"]
    assert result["result"]["failed"] and not result["result"]["ran"] and int(result["result"]["deleted"]) == 0
    assert all(os.path.exists(path) for path in old + young + [lock])


def test_open_files_cannot_be_seen_without_root_so_the_role_refuses(playbook, tmp_path):
    """Item 10: as an unprivileged user skip_open_files would miss other users' open files: refused, loudly."""
    base = tmp_path.parent / (tmp_path.name + "-public")
    app = base / "app-tmp"
    app.mkdir(parents=True)
    for directory in (tmp_path.parent.parent, tmp_path.parent, base, app):
        os.chmod(str(directory), 0o755)
    held = write(app / "held-by-root.tmp", 100, 2 * DAY)
    with open(held, "rb"):
        tasks = role(role_vars(base, app, tempfile_cleanup_threshold_percent=1))
        tasks[0].update({"become": True, "become_user": "nobody", "become_method": "ansible.builtin.su",
                         "become_flags": "-s /bin/sh", "vars": {"ansible_python_interpreter": "/usr/bin/python3"}})
        result = outcome(playbook(tasks))
    assert "skip_open_files" in result["error"] and "become: true" in result["error"], result
    assert os.path.exists(held)
