"""tempfile_cleanup's logic (module_utils/_tempfiles): amounts, option validation, root pinning, the decisions of the
walk, the oldest-first choice, and the re-checks at delete time, on real files in a temporary directory."""

import array
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _tempfiles as tf
from ansible_collections.selfheal.devops.plugins.modules import tempfile_cleanup

DAY = 86400


def params(**overrides):
    values = {"paths": ["/tmp/x"], "allowed_roots": ["/tmp", "/var/tmp"], "allow_protected_roots": [], "patterns": ["*"],
              "excludes": [], "age": "1h", "age_stamp": "mtime", "min_size": "0", "target_free_percent": None,
              "target_free_bytes": None, "remove_empty_dirs": False, "one_file_system": True, "skip_open_files": False,
              "max_files": 0, "sample_size": 20, "usage_only": False}
    values.update(overrides)
    return values


def make(path, size=10, age=2 * 3600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if age:
        stamp = time.time() - age
        os.utime(str(path), (stamp, stamp))
    return path


def cleaner_for(root, check_mode=False, **overrides):
    settings = tf.Settings(params(paths=[str(root)], allowed_roots=[str(root)], **overrides))
    return tf.Cleaner(settings, check_mode)


def stream(root, check_mode=False, **overrides):
    cleaner = cleaner_for(root, check_mode, **overrides)
    pinned = tf.open_root(str(root), tf.read_mounts())
    try:
        cleaner.stream(pinned)
    finally:
        pinned.close()
    return cleaner


def run(root, check_mode=False, **overrides):
    """The whole module logic (validation, pinning, cleaning) as the module runs it."""
    result, warnings = tf.clean(params(paths=[str(root)], allowed_roots=[str(root.parent)], **overrides), check_mode)
    assert warnings == []
    return result


# --- amounts -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("0", 0), ("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800),
                                            ("1w", 604800), ("1.5h", 5400), (" 15 ", 15)])
def test_ages(text, expected):
    assert tf.parse_age(text) == expected


@pytest.mark.parametrize("text, message", [("1M", "ambiguous"), ("", "not a number"), ("two days", "not a number"),
                                           ("-1d", "not a number"), ("5y", "not a number"), ("1e3", "not a number"),
                                           ("2H", "not a number"), ("1min", "not a number")])
def test_bad_or_ambiguous_ages_are_refused(text, message):
    with pytest.raises(tf.Refused) as info:
        tf.parse_age(text)
    assert message in str(info.value)


@pytest.mark.parametrize("text, expected", [("0", 0), ("512k", 524288), ("10M", 10485760), ("1g", 1073741824), ("100b", 100)])
def test_sizes(text, expected):
    assert tf.parse_size(text, "min_size") == expected


def test_printable_names():
    assert tf.printable("plain-ü.tmp") == "plain-ü.tmp"
    raw = os.fsdecode(b"bad-\xff\xfe.tmp")
    assert tf.printable(raw) == "bad-\\xff\\xfe.tmp"
    tf.printable(raw).encode("utf-8")  # valid UTF-8: Ansible accepts it


# --- options -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/usr/lib", "/etc/ssl", "/var/lib/dpkg", "/usr/local", "/usr", "/home/app/cache",
                                  "/var/log/app", "/opt/app/tmp", "/root/tmp", "/boot/grub", "/var", "/"])
def test_protected_trees_are_refused_even_when_allow_listed(path):
    with pytest.raises(tf.Refused) as info:
        tf.Settings(params(paths=[path], allowed_roots=[path]))
    assert "system directory" in str(info.value) or "filesystem root" in str(info.value)


@pytest.mark.parametrize("path", ["/usr/lib", "/etc/ssl", "/var/lib/dpkg", "/var/cache/app/tmp"])
def test_protected_trees_can_be_named_exactly(path):
    settings = tf.Settings(params(paths=[path], allowed_roots=[path], allow_protected_roots=[path]))
    assert settings.paths == [path]
    with pytest.raises(tf.Refused):  # only the exact path: a directory below it is still refused
        tf.Settings(params(paths=[path + "/sub"], allowed_roots=[path], allow_protected_roots=[path]))


def test_the_filesystem_root_can_never_be_allowed():
    with pytest.raises(tf.Refused) as info:
        tf.Settings(params(paths=["/"], allowed_roots=["/"], allow_protected_roots=["/"]))
    assert "allow_protected_roots cannot contain /" in str(info.value)


@pytest.mark.parametrize("path", ["/tmp", "/var/tmp", "/tmp/app/cache", "/var/tmp/app", "/data/scratch"])
def test_temp_trees_stay_allowed(path):
    assert tf.Settings(params(paths=[path], allowed_roots=[path])).paths == [path]


@pytest.mark.parametrize("overrides, message", [
    ({"excludes": ["/tmp/x/keep"]}, "is absolute"),
    ({"excludes": ["../keep"]}, "'..' component"),
    ({"excludes": ["./keep"]}, "'.' or '..' component"),
    ({"excludes": ["a//b"]}, "empty"),
    ({"excludes": [""]}, "cannot be empty"),
    ({"patterns": ["cache/*.tmp"]}, "file names only"),
    ({"paths": ["/tmp/x", "/tmp/x/y"]}, "inside /tmp/x"),
    ({"paths": ["/tmp/x", "/tmp/x/"]}, "the same as"),
    ({"paths": []}, "paths is empty"),
    ({"paths": ["tmp/x"]}, "not absolute"),
    ({"paths": ["/tmp/../etc"]}, "system directory"),
    ({"paths": ["/tmp/x/../../var/tmp/y"], "allowed_roots": ["/tmp"]}, "outside the allowed roots"),
    ({"max_files": -1}, "max_files must be 0 or more"),
    ({"target_free_percent": 100.0}, "between 0 and 100"),
    ({"target_free_bytes": "0"}, "more than 0"),
    ({"min_size": "ten"}, "not a number"),
])
def test_options_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(tf.Refused) as info:
        tf.Settings(params(**overrides))
    assert message in str(info.value)


# --- roots -------------------------------------------------------------------------------------------------------------

def test_roots_are_opened_without_following_any_symlink(tmp_path):
    real = tmp_path / "real" / "cache"
    real.mkdir(parents=True)
    (tmp_path / "above").symlink_to(tmp_path / "real")
    root = tf.open_root(str(real), {})
    try:
        assert os.fstat(root.fd).st_ino == os.stat(str(real)).st_ino
    finally:
        root.close()
    for path, message in ((tmp_path / "above" / "cache", "passes through a symlink (%s)" % (tmp_path / "above")),
                          (tmp_path / "missing" / "x", "does not exist"),
                          (make(tmp_path / "file") / "x", "is not a directory")):
        with pytest.raises(tf.Refused) as info:
            tf.open_root(str(path), {})
        assert message in str(info.value)


def test_pseudo_filesystems_are_refused():
    with pytest.raises(tf.Refused) as info:
        tf.open_root("/proc/sys", tf.read_mounts())
    assert "proc pseudo filesystem" in str(info.value)


def as_nobody(code):
    """Run python code as the unprivileged user nobody (a real process, real permissions); tf is imported first."""
    prelude = ("import os, sys; sys.path[:0] = %r; "
               "from ansible_collections.selfheal.devops.plugins.module_utils import _tempfiles as tf; "
               "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n" % (sys.path,))
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_unreadable_root_is_refused_without_a_traceback(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(str(tmp_path), 0o755)
    out = as_nobody("try:\n    tf.open_root(%r, {})\nexcept tf.Refused as exc:\n    print('REFUSED', exc)\n" % str(private / "cache"))
    assert out.stdout.startswith("REFUSED") and "not readable by uid 65534" in out.stdout, out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_skip_open_files_is_refused_when_other_processes_cannot_be_seen():
    out = as_nobody("try:\n    tf.scan_open_files()\nexcept tf.Refused as exc:\n    print('REFUSED', exc)\n")
    assert out.stdout.startswith("REFUSED") and "become: true" in out.stdout, out


@pytest.mark.skipif(os.geteuid() != 0, reason="the open-file scan needs root")
def test_open_files_scan_as_root_sees_our_open_file(tmp_path):
    held = make(tmp_path / "held")
    with open(str(held), "rb"):
        info = os.stat(str(held))
        assert (info.st_dev, info.st_ino) in tf.scan_open_files()


# --- the walk's decisions ----------------------------------------------------------------------------------------------

def test_every_file_is_counted_once_with_its_reason(tmp_path):
    """Check mode: each file lands in exactly one bucket, nothing is deleted."""
    files = {"go/a.tmp": (100, 7200), "go/deeper/b.tmp": (100, 7200), "young.tmp": (100, 0), "small.tmp": (5, 7200),
             "x.lock": (100, 7200), "keep/c.tmp": (100, 7200), "d.log": (100, 7200), "held.tmp": (100, 7200)}
    for relative, (size, age) in files.items():
        make(tmp_path / relative, size, age)
    os.mkfifo(str(tmp_path / "pipe.tmp"))
    os.utime(str(tmp_path / "pipe.tmp"), (time.time() - 7200,) * 2)
    cleaner = cleaner_for(tmp_path, True, patterns=["*.tmp"], excludes=["keep", "*.lock"], min_size="10",
                          remove_empty_dirs=True, sample_size=1)
    held = os.stat(str(tmp_path / "held.tmp"))
    cleaner.opened = {(held.st_dev, held.st_ino)}
    root = tf.open_root(str(tmp_path), tf.read_mounts())
    try:
        cleaner.stream(root)
    finally:
        root.close()
    assert (cleaner.deleted, cleaner.freed) == (2, 2 * os.stat(str(tmp_path / "go/a.tmp")).st_blocks * 512)
    assert cleaner.dirs_removed == 0  # go/ and go/deeper/ are fresh directories: they would stay
    assert cleaner.kept == dict(dict.fromkeys(tf.KEPT, 0), too_young=1, excluded=2, too_small=1, not_matched=1,
                                not_regular=1, open=1)
    assert len(cleaner.sample) == 1 and cleaner.sample[0].endswith(".tmp")
    assert all((tmp_path / relative).exists() for relative in files)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_sockets_fifos_and_devices_stay(tmp_path):
    """Issue 21 item 3: a live service's socket, a fifo and a device node are never deleted."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "service.sock"))
    server.listen(1)
    os.mkfifo(str(tmp_path / "queue.fifo"))
    os.mknod(str(tmp_path / "null.dev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    make(tmp_path / "plain.tmp")
    old = time.time() - DAY
    for name in ("service.sock", "queue.fifo", "null.dev"):
        os.utime(str(tmp_path / name), (old, old))
    try:
        cleaner = stream(tmp_path)
        assert cleaner.deleted == 1 and cleaner.kept["not_regular"] == 3
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(tmp_path / "service.sock"))  # the service is still reachable
        client.close()
    finally:
        server.close()
    assert sorted(os.listdir(str(tmp_path))) == ["null.dev", "queue.fifo", "service.sock"]


def test_non_utf8_names_come_back_printable(tmp_path):
    """Issue 21 item 4: a name that is not UTF-8 is deleted and reported with \\xNN escapes."""
    raw = os.path.join(os.fsencode(str(tmp_path)), b"bad-\xff.tmp")
    with open(raw, "wb") as handle:
        handle.write(b"x")
    os.utime(raw, (time.time() - DAY,) * 2)
    check = run(tmp_path, True)
    assert check["sample"] == [str(tmp_path) + "/bad-\\xff.tmp"] and os.path.exists(raw)
    result = run(tmp_path)
    assert result["deleted"] == 1 and result["sample"] == check["sample"] and not os.path.exists(raw)


def test_young_empty_directories_stay(tmp_path):
    """Issue 21 item 9: only directories that were old before the walk are removed; check mode counts them too."""
    make(tmp_path / "old-dir" / "old.tmp")
    make(tmp_path / "old-dir" / "sub" / "old.tmp")
    old = time.time() - DAY
    for directory in ("old-dir/sub", "old-dir"):
        os.utime(str(tmp_path / directory), (old, old))
    (tmp_path / "uploads").mkdir()  # fresh and empty: in use
    (tmp_path / "old-empty").mkdir()
    os.utime(str(tmp_path / "old-empty"), (old, old))
    check = stream(tmp_path, True, remove_empty_dirs=True)
    real = stream(tmp_path, remove_empty_dirs=True)
    assert (check.deleted, check.dirs_removed) == (real.deleted, real.dirs_removed) == (2, 3)
    assert sorted(os.listdir(str(tmp_path))) == ["uploads"]


def test_hard_links_free_space_only_with_their_last_link(tmp_path):
    """Issue 21 item 11: bytes_freed counts what is really freed, in check mode too."""
    shared = make(tmp_path / "a" / "data.tmp", size=40000)
    os.link(str(shared), str(tmp_path / "b-link.tmp"))
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir(exist_ok=True)
    kept_elsewhere = make(tmp_path / "c" / "kept.tmp", size=40000)
    os.link(str(kept_elsewhere), str(outside / "kept-link"))
    blocks = os.stat(str(shared)).st_blocks * 512
    check = run(tmp_path, True, age="1h")
    result = run(tmp_path, age="1h")
    assert check["deleted"] == result["deleted"] == 3
    assert check["bytes_freed"] == result["bytes_freed"] == blocks  # the data outside still has a link
    assert (outside / "kept-link").exists()


def test_max_files_stops_deleting(tmp_path):
    for number in range(10):
        make(tmp_path / ("d%d" % (number % 3)) / ("f%d" % number))
    cleaner = stream(tmp_path, max_files=4)
    assert cleaner.deleted == 4 and cleaner.kept["limit"] == 6
    assert sum(len(files) for dummy, dummy2, files in os.walk(str(tmp_path))) == 6


def test_file_replaced_after_the_listing_is_read_stays(tmp_path, monkeypatch):
    """Issue 21 item 7: the decision uses an lstat made right before the unlink, not one from the listing.

    While the first file is unlinked, the second is replaced by a fresh copy (as an application rewriting it would):
    the walk must keep the fresh copy.
    """
    make(tmp_path / "a.tmp")
    make(tmp_path / "b.tmp")
    real_unlink = os.unlink
    replaced = []

    def unlink_and_replace(name, dir_fd=None):
        real_unlink(name, dir_fd=dir_fd)
        if not replaced:
            other = "b.tmp" if name == "a.tmp" else "a.tmp"
            make(tmp_path / ".fresh", age=0)
            os.rename(str(tmp_path / ".fresh"), str(tmp_path / other))
            replaced.append(other)

    monkeypatch.setattr(os, "unlink", unlink_and_replace)
    cleaner = stream(tmp_path)
    assert cleaner.deleted == 1 and cleaner.kept["too_young"] == 1
    assert os.listdir(str(tmp_path)) == replaced


# --- target mode -------------------------------------------------------------------------------------------------------

def fake_group(stamps, blocks, links=None):
    group = tf.Group([], None)
    group.stamps, group.blocks = array.array("q", stamps), array.array("q", blocks)
    group.links = links or {}
    group.state = bytearray(len(stamps))
    return group


@pytest.mark.parametrize("need, max_files, chosen, planned", [
    (1, 0, [3], 10),                 # the oldest alone is enough
    (25, 0, [3, 1, 2], 30),          # oldest first: 3 (t=1), 1 (t=2), then 2 before 4 (same t=5: walk order)
    (10 ** 9, 0, [0, 1, 2, 3, 4], 50),  # never enough: all of them
    (25, 2, [3, 1], 20),             # the limit stops it
])
def test_oldest_candidates_are_chosen(need, max_files, chosen, planned):
    group = fake_group([9, 2, 5, 1, 5], [10] * 5)
    cleaner = tf.Cleaner(tf.Settings(params(max_files=max_files)), True)
    assert cleaner.choose(group, need) == planned
    assert [index for index, value in enumerate(group.state) if value == 1] == sorted(chosen)


def test_hard_links_count_once_all_links_are_chosen():
    group = fake_group([1, 1, 2], [100, 100, 100], links={0: (1, 7, 2), 1: (1, 7, 2)})
    cleaner = tf.Cleaner(tf.Settings(params()), True)
    assert cleaner.choose(group, 150) == 200  # links 0 and 1 free 100 together, then file 2
    assert list(group.state) == [1, 1, 1]


def test_target_mode_rechecks_each_file_before_deleting_it(tmp_path, monkeypatch):
    """Issue 21 item 7 (target mode): a chosen file replaced by a fresh copy after the walk stays."""
    for number in range(4):
        make(tmp_path / "d" / ("f%d.tmp" % number), age=(10 - number) * 3600)
    cleaner = cleaner_for(tmp_path, target_free_bytes="1")
    root = tf.open_root(str(tmp_path), tf.read_mounts())
    group = tf.Group([root], 10 ** 18)  # unreachable: every candidate is chosen
    real_choose = cleaner.choose

    def choose_then_replace(group_, need):
        planned = real_choose(group_, need)
        make(tmp_path / "d" / ".fresh", age=0)
        os.rename(str(tmp_path / "d" / ".fresh"), str(tmp_path / "d" / "f0.tmp"))  # the oldest, rewritten
        return planned

    monkeypatch.setattr(cleaner, "choose", choose_then_replace)
    try:
        cleaner.to_target(group)
    finally:
        root.close()
    assert cleaner.deleted == 3 and cleaner.kept["replaced"] == 1
    assert os.listdir(str(tmp_path / "d")) == ["f0.tmp"]


def test_target_mode_directory_swapped_after_the_walk_is_not_entered(tmp_path, monkeypatch):
    """A directory renamed away and replaced (here by a symlink to precious data) between the walk and the deletes."""
    for number in range(3):
        make(tmp_path / "root" / "d" / ("f%d.tmp" % number))
    precious = [make(tmp_path / "precious" / ("f%d.tmp" % number)) for number in range(3)]
    cleaner = cleaner_for(tmp_path / "root", target_free_bytes="1")
    root = tf.open_root(str(tmp_path / "root"), tf.read_mounts())
    group = tf.Group([root], 10 ** 18)
    real_choose = cleaner.choose

    def choose_then_swap(group_, need):
        planned = real_choose(group_, need)
        if os.path.islink(str(tmp_path / "root" / "d")):
            return planned  # swapped already (a further round)
        os.rename(str(tmp_path / "root" / "d"), str(tmp_path / "moved"))
        os.symlink(str(tmp_path / "precious"), str(tmp_path / "root" / "d"))
        return planned

    monkeypatch.setattr(cleaner, "choose", choose_then_swap)
    try:
        cleaner.to_target(group)
    finally:
        root.close()
    assert cleaner.deleted == 0 and cleaner.kept["replaced"] == 3
    assert all(path.exists() for path in precious)
    assert len(os.listdir(str(tmp_path / "moved"))) == 3


def test_module_shape():
    """cleanup() returns (changed, result, diff, warnings) and refuses with the typed error."""
    with pytest.raises(tf.Refused):
        tempfile_cleanup.cleanup(params(paths=["/etc"]), True)
