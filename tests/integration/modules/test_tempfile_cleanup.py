"""tempfile_cleanup on real filesystems, through real ansible-playbook: nothing outside the roots and nothing
protected is ever deleted; the target mode stops as soon as the target is met."""

import os
import subprocess
import time

import pytest

DAY = 86400


def make(path, size=10, age=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if age:
        stamp = time.time() - age
        os.utime(str(path), (stamp, stamp))
    return path


def snapshot(root):
    return sorted(os.path.join(d, f) for d, dirs, files in os.walk(str(root)) for f in files + dirs)


def cleanup(name, check=None, **args):
    item = {"name": name, "selfheal.devops.tempfile_cleanup": args, "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


@pytest.fixture
def tree(tmp_path):
    """A temp root with old and young files, excludes, symlinks pointing outside, and an outside tree."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    make(outside / "precious.db", age=30 * DAY)
    make(outside / "dir" / "also-precious", age=30 * DAY)
    old = [make(root / "a" / ("old%d.tmp" % n), size=100, age=3 * DAY) for n in range(5)]
    young = make(root / "a" / "young.tmp", age=60)
    kept = make(root / "keep" / "state.tmp", age=3 * DAY)
    lock = make(root / "b" / "app.lock", age=3 * DAY)
    os.symlink(str(outside / "precious.db"), str(root / "a" / "link-to-file.tmp"))
    os.utime(str(root / "a" / "link-to-file.tmp"), (time.time() - 3 * DAY,) * 2, follow_symlinks=False)
    os.symlink(str(outside / "dir"), str(root / "a" / "link-to-dir"))
    return {"root": root, "outside": outside, "old": old, "young": young, "kept": kept, "lock": lock}


def test_cleanup_is_safe_check_apply_rerun(playbook, tree):
    root, outside = tree["root"], tree["outside"]
    before_outside = snapshot(outside)
    args = dict(paths=[str(root)], allowed_roots=[str(root.parent)], age="1d", excludes=["*.lock", "keep/*"])
    going = [str(p) for p in tree["old"][1:]] + [str(root / "a" / "link-to-file.tmp")]
    blocks = sum(os.lstat(p).st_blocks * 512 for p in going)  # the space they really take (not the apparent size)
    held = open(str(tree["old"][0]), "rb")  # a process holds the oldest file open
    try:
        check = playbook([cleanup("check", check=True, skip_open_files=True, **args)])["check"]
        assert check["changed"] and check["deleted"] == 5 and len(check["sample"]) == 5  # 4 old files + the old link
        assert all(p.exists() for p in tree["old"]) and os.path.lexists(str(root / "a" / "link-to-file.tmp"))
        run = playbook([cleanup("apply", skip_open_files=True, **args), cleanup("rerun", skip_open_files=True, **args)])
    finally:
        held.close()
    apply, rerun = run["apply"], run["rerun"]
    assert apply["changed"] and apply["deleted"] == 5 and apply["bytes_freed"] == blocks == check["bytes_freed"]
    # kept: the open file; young.tmp and the young link-to-dir symlink; app.lock and the keep/ directory
    assert apply["kept"]["open"] == 1 and apply["kept"]["too_young"] == 2 and apply["kept"]["excluded"] == 2
    assert rerun["changed"] is False and rerun["deleted"] == 0
    assert tree["old"][0].exists() and not any(p.exists() for p in tree["old"][1:])
    assert tree["young"].exists() and tree["kept"].exists() and tree["lock"].exists()
    assert not os.path.lexists(str(root / "a" / "link-to-file.tmp"))  # the old link went, as a link
    assert os.path.islink(str(root / "a" / "link-to-dir"))  # a young link stays; its target is never entered
    assert snapshot(outside) == before_outside  # nothing outside the root was touched
    assert apply["errors"] == [] and apply["target_met"] is True


@pytest.mark.parametrize("paths, allowed, message", [
    (["/"], ["/"], "system directory"),
    (["/etc"], ["/tmp"], "system directory"),
    (["relative/dir"], ["/tmp"], "not absolute"),
    (["/var/lib"], ["/var/tmp"], "system directory"),
    (["{outside}"], ["{root}"], "outside the allowed roots"),
    (["{link}"], ["{parent}"], "passes through a symlink"),
])
def test_unsafe_input_is_refused_and_nothing_is_deleted(playbook, tree, paths, allowed, message):
    link = tree["root"].parent / "root-link"
    os.symlink(str(tree["outside"]), str(link))
    values = {"outside": str(tree["outside"]), "root": str(tree["root"]), "link": str(link), "parent": str(tree["root"].parent)}
    before = snapshot(tree["root"].parent)
    run = playbook([cleanup("refused", paths=[p.format(**values) for p in paths], allowed_roots=[a.format(**values) for a in allowed])])
    assert run["refused"]["failed"] and run["refused"]["refused"] and message in run["refused"]["msg"]
    assert snapshot(tree["root"].parent) == before
    assert "Traceback" not in run.stdout + run.stderr


@pytest.fixture
def small_fs(tmp_path):
    """A real 8 MiB tmpfs (needs root and mount); skipped where mounting is not allowed."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % result.stderr.decode().strip())
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_target_mode_deletes_oldest_first_and_stops_when_met(playbook, small_fs):
    files = [make(small_fs / "cache" / ("chunk%02d.bin" % n), size=1024 * 1024, age=(10 + n) * 3600) for n in range(7)]
    vfs = os.statvfs(str(small_fs))
    free_now = vfs.f_bavail * vfs.f_frsize
    target = free_now + int(2.5 * 1024 * 1024)  # needs three of the 1 MiB files to go
    run = playbook([cleanup("to target", paths=[str(small_fs / "cache")], allowed_roots=[str(small_fs)],
                            target_free_bytes=str(target))])
    result = run["to target"]
    assert result["deleted"] == 3 and result["target_met"], result
    assert [f.exists() for f in files] == [True, True, True, True, False, False, False]  # the three oldest went
    assert result["usage_after"]["free"] >= target


def test_nested_mount_is_left_alone(playbook, tmp_path, small_fs):
    root = tmp_path / "root2"
    make(root / "old.tmp", age=3 * DAY)
    inner = root / "mnt"
    inner.mkdir()
    subprocess.run(["mount", "--bind", str(small_fs), str(inner)], check=True)
    try:
        make(small_fs / "on-other-fs.tmp", age=3 * DAY)
        run = playbook([cleanup("one fs", paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d")])
        assert run["one fs"]["deleted"] == 1 and run["one fs"]["kept"]["other_fs"] == 1, run["one fs"]
        assert (small_fs / "on-other-fs.tmp").exists()
    finally:
        subprocess.run(["umount", "-l", str(inner)], check=False)


def test_per_file_errors_are_reported_not_fatal(playbook, tmp_path):
    root = tmp_path / "root3"
    for n in range(3):
        make(root / ("f%d.tmp" % n), age=3 * DAY)
    stuck = make(root / "stuck" / "immutable.tmp", age=3 * DAY)
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        run = playbook([cleanup("with errors", paths=[str(root)], allowed_roots=[str(tmp_path)], age="1d")])
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=False)
    result = run["with errors"]
    assert not result.get("failed") and result["deleted"] == 3
    assert [e["path"] for e in result["errors"]] == [str(stuck)] and "Operation not permitted" in result["errors"][0]["error"]
