"""tempfile_cleanup through real ansible-playbook, one test per shortfall of issue 21 (items 2-6, 8, 9, 11): bind mounts,
special files, odd names, protected trees, check mode in target mode, excludes that cannot match, young empty
directories, clear refusals, and the space really freed."""

import os
import socket
import subprocess
import time

import pytest

DAY = 86400


def make(path, size=10, age=2 * DAY):
    path = path if isinstance(path, bytes) else os.fsencode(str(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"x" * size)
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path


def task(name, check=None, **args):
    item = {"name": name, "selfheal.devops.tempfile_cleanup": args, "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def ok(run, name):
    assert "Traceback" not in run.stdout + run.stderr
    result = run[name]
    assert not result.get("failed"), result
    return result


@pytest.fixture
def small_fs(tmp_path):
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mountpoint)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % result.stderr.decode().strip())
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_bind_mount_of_the_same_filesystem_is_left_alone(playbook, tmp_path):
    """Item 2: a directory of the same filesystem bind-mounted inside the root (same st_dev) is not walked."""
    elsewhere = tmp_path / "elsewhere"
    precious = [make(elsewhere / ("data%02d.db" % number)) for number in range(25)]
    root = tmp_path / "root"
    make(root / "old.tmp")
    (root / "mnt").mkdir()
    assert os.stat(str(elsewhere)).st_dev == os.stat(str(root)).st_dev
    if subprocess.run(["mount", "--bind", str(elsewhere), str(root / "mnt")], capture_output=True, check=False).returncode:
        pytest.skip("bind mounts are not allowed here")
    try:
        run = playbook([task("check", check=True, paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d"),
                        task("apply", paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d")])
    finally:
        subprocess.run(["umount", "-l", str(root / "mnt")], check=False)
    for name in ("check", "apply"):
        result = ok(run, name)
        assert result["deleted"] == 1 and result["kept"]["other_fs"] == 1, result
    assert all(os.path.exists(path) for path in precious)


def test_sockets_fifos_and_device_nodes_stay(playbook, tmp_path):
    """Item 3: a live service's socket (old by mtime) is not deleted; clients can still connect."""
    root = tmp_path / "root"
    root.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "service.sock"))
    server.listen(1)
    os.mkfifo(str(root / "queue.fifo"))
    os.mknod(str(root / "null.dev"), 0o600 | 0o020000, os.makedev(1, 3))
    old = time.time() - 2 * DAY
    for name in ("service.sock", "queue.fifo", "null.dev"):
        os.utime(str(root / name), (old, old))
    make(root / "plain.tmp")
    try:
        result = ok(playbook([task("apply", paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d")]), "apply")
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(root / "service.sock"))
        client.close()
    finally:
        server.close()
    assert result["deleted"] == 1 and result["kept"]["not_regular"] == 3
    assert sorted(os.listdir(str(root))) == ["null.dev", "queue.fifo", "service.sock"]


def test_non_utf8_names_are_returned_escaped_in_check_mode_and_for_real(playbook, tmp_path):
    """Item 4: Ansible accepts the answer; the counts and the names come back."""
    root = tmp_path / "root"
    odd = make(os.fsencode(str(root)) + b"/r\xe9sum\xe9.tmp")
    args = dict(paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d")
    run = playbook([task("check", check=True, **args), task("apply", **args), task("rerun", **args)])
    check, apply, rerun = ok(run, "check"), ok(run, "apply"), ok(run, "rerun")
    assert check["deleted"] == apply["deleted"] == 1 and check["sample"] == apply["sample"] == [str(root) + "/r\\xe9sum\\xe9.tmp"]
    assert not os.path.exists(odd) and rerun["changed"] is False and rerun["deleted"] == 0


@pytest.mark.parametrize("path", ["/usr/lib", "/etc/ssl", "/var/lib/dpkg", "/usr/local"])
def test_system_trees_are_refused_even_when_allow_listed(playbook, path):
    """Item 5: check mode offered 60,789 files of /usr/lib; now refused before anything is walked."""
    run = playbook([task("refused", check=True, paths=[path], allowed_roots=[path])])
    result = run["refused"]
    assert result["failed"] and result["refused"] and "protected system directory" in result["msg"], result
    assert "allow_protected_roots" in result["msg"] and "Traceback" not in run.stdout + run.stderr


def test_a_protected_tree_named_exactly_is_accepted(playbook):
    """Item 5: the explicit override works (check mode, nothing is old enough: /etc/ssl is only read)."""
    run = playbook([task("allowed", check=True, paths=["/etc/ssl"], allowed_roots=["/etc/ssl"],
                         allow_protected_roots=["/etc/ssl"], age="36500d")])
    result = ok(run, "allowed")
    assert result["deleted"] == 0 and result["changed"] is False and result["kept"]["too_young"] > 0


def test_check_mode_predicts_target_mode_exactly(playbook, small_fs):
    """Item 6: 2,000 small old files, a target that needs about a quarter of them: check mode = real run."""
    root = small_fs / "cache"
    for number in range(2000):
        make(root / ("d%02d" % (number // 100)) / ("f%04d.tmp" % number), size=1500, age=DAY + number * 60)
    old = time.time() - 3 * DAY
    for number in range(20):
        os.utime(str(root / ("d%02d" % number)), (old, old))
    vfs = os.statvfs(str(small_fs))
    target = vfs.f_bavail * vfs.f_frsize + 512 * 4096  # 512 files of one page each
    args = dict(paths=[str(root)], allowed_roots=[str(small_fs)], age="1d", target_free_bytes=str(target), remove_empty_dirs=True)
    run = playbook([task("check", check=True, **args), task("apply", **args)])
    check, apply = ok(run, "check"), ok(run, "apply")
    for key in ("deleted", "bytes_freed", "dirs_removed", "target_met", "sample"):
        assert check[key] == apply[key], (key, check[key], apply[key])
    assert apply["deleted"] == 512 and apply["target_met"] and apply["usage_after"]["free"] >= target
    # The oldest 512 are f1488-f1999: d15-d19 are emptied and removed, d14 keeps 88 files.
    assert apply["dirs_removed"] == 5 and sorted(os.listdir(str(root))) == ["d%02d" % number for number in range(15)]
    assert check["kept"]["not_needed"] == apply["kept"]["not_needed"] == 2000 - 512


def test_excludes_that_cannot_match_are_refused(playbook, tmp_path):
    """Item 8: an absolute exclude used to be accepted and ignored (the files to keep were deleted)."""
    root = tmp_path / "root"
    keep = make(root / "keep" / "state.db")
    run = playbook([task("refused", paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d", excludes=[str(root / "keep")])])
    assert run["refused"]["failed"] and "is absolute" in run["refused"]["msg"]
    assert os.path.exists(keep)


def test_young_empty_directories_stay(playbook, tmp_path):
    """Item 9: a fresh empty uploads/ stays; old directories emptied by the run go; check mode says the same."""
    root = tmp_path / "root"
    make(root / "old" / "a.tmp")
    (root / "uploads").mkdir(parents=True)
    old = time.time() - 2 * DAY
    os.utime(str(root / "old"), (old, old))
    args = dict(paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d", remove_empty_dirs=True)
    run = playbook([task("check", check=True, **args), task("apply", **args)])
    assert ok(run, "check")["dirs_removed"] == ok(run, "apply")["dirs_removed"] == 1
    assert os.listdir(str(root)) == ["uploads"]


@pytest.mark.parametrize("args, message", [
    ({"paths": ["{missing}"]}, "does not exist"),
    ({"age": "1M"}, "ambiguous"),
    ({"max_files": -5}, "max_files must be 0 or more"),
    ({"patterns": ["sub/*.tmp"]}, "file names only"),
])
def test_bad_input_gets_a_clear_error(playbook, tmp_path, args, message):
    """Item 11: refusals instead of tracebacks; nothing is deleted."""
    root = tmp_path / "root"
    old = make(root / "old.tmp")
    values = dict({"paths": [str(root)], "allowed_roots": [str(tmp_path)]}, **args)
    values["paths"] = [p.format(missing=str(tmp_path / "missing")) for p in values["paths"]]
    run = playbook([task("refused", **values)])
    assert run["refused"]["failed"] and run["refused"]["refused"] and message in run["refused"]["msg"], run["refused"]
    assert "Traceback" not in run.stdout + run.stderr and os.path.exists(old)


def test_bytes_freed_counts_only_space_really_freed(playbook, small_fs):
    """Item 11: a hard-linked file whose other link stays frees nothing; usage agrees with bytes_freed."""
    root, outside = small_fs / "root", small_fs / "outside"
    linked = make(root / "linked.tmp", size=1024 * 1024)
    os.makedirs(str(outside))
    os.link(linked, str(outside / "kept-link"))
    make(root / "alone.tmp", size=1024 * 1024)
    before = os.statvfs(str(small_fs))
    result = ok(playbook([task("apply", paths=[str(root)], allowed_roots=[str(small_fs)], age="1d")]), "apply")
    after = os.statvfs(str(small_fs))
    assert result["deleted"] == 2 and result["bytes_freed"] == 1024 * 1024
    assert (after.f_bavail - before.f_bavail) * after.f_frsize == result["bytes_freed"]
