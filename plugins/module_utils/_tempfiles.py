# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Temp-file cleanup that cannot be turned against the host: the logic of the tempfile_cleanup module.

Private to the selfheal.devops collection. Standard library only (it runs on the managed host, Python 3.9+).

How it stays inside its roots (the module usually runs as root; the trees it cleans are often writable by others):
- Every root is opened by walking from C(/) one component at a time with C(openat(O_NOFOLLOW|O_DIRECTORY)), so no
  symlink anywhere on the path is followed, and from then on only that directory descriptor is used: the path string
  is never resolved again, so swapping a directory above (or inside) the root for a symlink cannot redirect anything.
- Below the root every directory is opened relative to its parent's descriptor with C(O_NOFOLLOW|O_DIRECTORY);
  every delete is an C(unlinkat) relative to the descriptor of the directory the walk is in.
- Mounts are detected by mount id (C(/proc/self/fdinfo)), not only by device number, so bind mounts of the same
  filesystem are seen.
- Only regular files (and symlinks, removed as links) may go; type, age, size and inode come from an C(lstat) made
  immediately before each unlink, never from an earlier listing.
- The oldest-first (target) mode keeps its candidates compactly (numbers in arrays, names joined per directory), picks
  the oldest, then opens each directory again from the pinned root (checking it is the same directory) and checks
  each file again (same inode, still old enough) before the unlink. Check mode runs the same decision code.
"""

import array
import errno
import fnmatch
import itertools
import operator
import os
import re
import stat
import time

from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput

# A root inside (or containing) one of these trees is refused unless named exactly in allow_protected_roots.
PROTECTED_TREES = ("/bin", "/boot", "/dev", "/efi", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
                   "/lost+found", "/media", "/mnt", "/nix", "/opt", "/proc", "/root", "/run", "/sbin", "/snap",
                   "/srv", "/sys", "/usr", "/var/backups", "/var/cache", "/var/db", "/var/empty", "/var/lib",
                   "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run", "/var/spool",
                   "/var/www", "/var/yp")
# Never cleaned, whatever the options say.
PSEUDO_FILESYSTEMS = frozenset(("autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
                                "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore",
                                "securityfs", "selinuxfs", "sysfs", "tracefs"))
# Age units are case-sensitive: "M" (months? minutes?) is refused as ambiguous.
AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
STAMPS = {"mtime": "st_mtime_ns", "atime": "st_atime_ns", "ctime": "st_ctime_ns"}
KEPT = ("too_young", "excluded", "too_small", "not_matched", "not_regular", "open", "other_fs", "limit",
        "not_needed", "replaced")
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
NS = 1000000000


class Refused(InvalidInput):
    """Unsafe or invalid input: nothing was deleted."""

    kind = "refused"


# --- small pure helpers --------------------------------------------------------------------------------------------

def printable(text):
    """text as valid UTF-8 whatever bytes it came from: undecodable bytes become \\xNN."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def os_error_text(exc):
    """An OSError without the file name in it (names are reported separately, made printable)."""
    code = errno.errorcode.get(exc.errno, str(exc.errno))
    return "%s (%s)" % (exc.strerror or os.strerror(exc.errno or 0), code)


def parse_age(text):
    """Seconds from V(90s), V(30m), V(2h), V(7d), V(1w) or a plain number of seconds."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$", str(text))
    if match and match.group(2) in AGE_UNITS:
        return float(match.group(1)) * AGE_UNITS[match.group(2)]
    if match and match.group(2) == "M":
        raise Refused("age %r is ambiguous: use m for minutes; months are not supported (use d or w)" % (text,))
    raise Refused("age %r is not a number with an optional unit (s, m, h, d, w)" % (text,))


def parse_size(text, what):
    """Bytes from V(0), V(512k), V(10M), V(1G), V(2T) (binary units, case-insensitive)."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]?)\s*$", str(text))
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise Refused("%s %r is not a number with an optional unit (k, M, G, T)" % (what, text))
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


def inside(path, tree):
    """path is tree or below it (both normalised absolute paths)."""
    return path == tree or tree == "/" or path.startswith(tree + "/")


def protection(path):
    """Why path (normalised, absolute) is protected, or None."""
    if path == "/":
        return "the filesystem root (the top system directory)"
    for tree in PROTECTED_TREES:
        if inside(path, tree):
            return "inside the protected system directory %s" % tree
        if tree.startswith(path + "/"):
            return "a system directory (it contains the protected %s)" % tree
    return None


def usage(fd):
    """Usage of the filesystem holding the open directory fd."""
    vfs = os.fstatvfs(fd)
    total, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
    used = total - vfs.f_bfree * vfs.f_frsize
    return {"total": total, "used": used, "free": free,
            "used_percent": round(100.0 * used / (used + free), 2) if used + free else 0.0}


# --- options ---------------------------------------------------------------------------------------------------------

class Settings(object):
    """The validated options. Raises Refused for anything unsafe or that cannot do what it says."""

    def __init__(self, params):
        self.allow_protected = self._absolute_list(params.get("allow_protected_roots") or [], "allow_protected_roots")
        for path in self.allow_protected:
            if path == "/":
                raise Refused("allow_protected_roots cannot contain /: the filesystem root is never cleaned")
        self.allowed_roots = self._absolute_list(params["allowed_roots"], "allowed root")
        for root in self.allowed_roots:
            self._check_protection(root, "allowed root")
        self.paths = self._absolute_list(params["paths"], "path")
        if not self.paths:
            raise Refused("paths is empty: name the directories to clean")
        for path in self.paths:
            self._check_protection(path, "path")
            if not any(inside(path, root) for root in self.allowed_roots):
                raise Refused("path %s is outside the allowed roots (%s)" % (path, ", ".join(self.allowed_roots)))
        for path, other in itertools.permutations(self.paths, 2):
            if inside(path, other):
                raise Refused("path %s is %s %s: list each directory once" % (path, "the same as" if path == other else "inside", other))
        self.patterns = self._patterns(params["patterns"], "pattern", names_only=True)
        self.match_all = "*" in params["patterns"]
        self.excludes = self._patterns(params["excludes"], "exclude", names_only=False)
        self.filtered = bool(self.excludes) or not self.match_all
        self.age_seconds = parse_age(params["age"])
        self.stamp = STAMPS[params["age_stamp"]]
        self.min_size = parse_size(params["min_size"], "min_size")
        self.target_percent = params.get("target_free_percent")
        if self.target_percent is not None and not 0 < self.target_percent < 100:
            raise Refused("target_free_percent must be between 0 and 100 (exclusive), not %s" % self.target_percent)
        self.target_bytes = None
        if params.get("target_free_bytes") is not None:
            self.target_bytes = parse_size(params["target_free_bytes"], "target_free_bytes")
            if self.target_bytes <= 0:
                raise Refused("target_free_bytes must be more than 0")
        self.remove_dirs = params["remove_empty_dirs"]
        self.one_fs = params["one_file_system"]
        self.skip_open = params["skip_open_files"]
        self.max_files = params["max_files"]
        self.sample_size = params["sample_size"]
        for name in ("max_files", "sample_size"):
            if params[name] < 0:
                raise Refused("%s must be 0 or more, not %s" % (name, params[name]))
        self.usage_only = params.get("usage_only", False)

    @property
    def target_mode(self):
        return self.target_percent is not None or self.target_bytes is not None

    @staticmethod
    def _absolute_list(values, what):
        checked = []
        for value in values:
            if not value or "\0" in value or not os.path.isabs(value):
                raise Refused("%s %r is not absolute" % (what, value))
            checked.append(os.path.normpath(value).replace("//", "/"))
        return checked

    def _check_protection(self, path, what):
        reason = protection(path)
        if reason and (path == "/" or path not in self.allow_protected):
            raise Refused("%s %s is %s; cleaning it is refused%s" % (
                what, path, reason, "" if path == "/" else " unless it is listed exactly in allow_protected_roots"))

    @staticmethod
    def _patterns(values, what, names_only):
        compiled = []
        for value in values:
            if not value:
                raise Refused("%s patterns cannot be empty" % what)
            if names_only and "/" in value:
                raise Refused("pattern %r contains '/': patterns match file names only (use excludes for paths)" % value)
            if value.startswith("/"):
                raise Refused("exclude %r is absolute: excludes match a name or a path relative to each root "
                              "(for example 'keep/*'), so it would never match" % value)
            parts = value.rstrip("/").split("/")
            if any(part in ("", ".", "..") for part in parts):
                raise Refused("%s %r has an empty, '.' or '..' component: it would never match a path under a root" % (what, value))
            compiled.append(re.compile(fnmatch.translate(value)))
        return compiled


def scan_open_files():
    """(device, inode) of every regular file a process has open. Refused when some processes cannot be seen."""
    found, hidden = set(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = "/proc/%s/fd" % pid
        try:
            names = os.listdir(fd_dir)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                hidden.append(pid)
            continue
        for name in names:
            try:
                info = os.stat(fd_dir + "/" + name)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.add((info.st_dev, info.st_ino))
    if hidden or os.geteuid() != 0:
        raise Refused("skip_open_files: running as uid %d, the open files of %s cannot be seen, so open files "
                      "could be deleted; run the module as root (become: true) or set skip_open_files: false"
                      % (os.geteuid(), "%d processes (for example pid %s)" % (len(hidden), hidden[0]) if hidden
                         else "other users' processes"))
    return found


# --- mounts ------------------------------------------------------------------------------------------------------------

def read_mounts(path="/proc/self/mountinfo"):
    """{mount id: (st_dev number, fstype)} of this mount namespace; {} when it cannot be read."""
    mounts = {}
    try:
        with open(path, "rb") as handle:
            lines = handle.read().decode("utf-8", "surrogateescape").splitlines()
    except OSError:
        return mounts
    for line in lines:
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            mounts[int(fields[0])] = (os.makedev(int(major), int(minor)), fields[fields.index("-") + 1])
        except (IndexError, ValueError):
            continue
    return mounts


def mount_id(fd):
    """The mount id of an open fd (/proc/self/fdinfo, Linux 3.15+), None when unavailable."""
    try:
        info = os.open("/proc/self/fdinfo/%d" % fd, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        data = os.read(info, 4096)
    except OSError:
        return None
    finally:
        os.close(info)
    match = re.search(br"^mnt_id:\s*(\d+)", data, re.M)
    return int(match.group(1)) if match else None


# --- roots -------------------------------------------------------------------------------------------------------------

class Root(object):
    """A directory opened once, safely; only its descriptor is used afterwards."""

    def __init__(self, path, fd, mounts):
        self.path = path
        self.prefix = path.rstrip("/") + "/"
        self.fd = fd
        info = os.fstat(fd)
        self.dev, self.ino = info.st_dev, info.st_ino
        self.mnt = mount_id(fd)
        # Device numbers are enough unless the same filesystem is mounted more than once (bind mounts), or the
        # mount table cannot tell (btrfs subvolumes): then each directory's mount id is compared too.
        same_dev = sum(1 for dev, fstype in mounts.values() if dev == self.dev)
        self.check_mnt = self.mnt is not None and same_dev != 1
        self.fstype = mounts.get(self.mnt, (None, None))[1]

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_root(path, mounts):
    """Open path from / one component at a time, never following a symlink; a Root or Refused."""
    fd = os.open("/", DIR_FLAGS)
    walked = ""
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise Refused(_open_refusal(path, walked + "/" + part, part, fd, exc))
            os.close(fd)
            fd = child
            walked += "/" + part
        root = Root(path, fd, mounts)
    except BaseException:
        os.close(fd)
        raise
    if root.fstype in PSEUDO_FILESYSTEMS:
        root.close()
        raise Refused("path %s is on a %s pseudo filesystem; cleaning it is refused" % (path, root.fstype))
    return root


def _open_refusal(path, walked, part, parent_fd, exc):
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            mode = os.lstat(part, dir_fd=parent_fd).st_mode
        except OSError:
            mode = 0
        if stat.S_ISLNK(mode):
            return "path %s is or passes through a symlink (%s); refused" % (path, walked)
        if not mode or stat.S_ISDIR(mode) or exc.errno == errno.ELOOP:  # a symlink when opened, now gone or a directory again
            return "path %s changed while it was opened (%s was swapped with a symlink); refused" % (path, walked)
        return "path %s is not a directory (%s is not one)" % (path, walked)
    if exc.errno == errno.ENOENT:
        return "path %s is not a directory: %s does not exist (or was just renamed)" % (path, walked)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "path %s cannot be opened: %s is not readable by uid %d (%s)" % (path, walked, os.geteuid(), os_error_text(exc))
    return "path %s cannot be opened at %s: %s" % (path, walked, os_error_text(exc))


# --- the cleaner -------------------------------------------------------------------------------------------------------

# A directory met by the walk in target mode (a list, for speed and size):
# parent record index (-1 for a root), name, first candidate index, candidate count, entries that stay, inode,
# old enough to be removed when empty, candidate names joined by NUL, the Root, its own index.
PARENT, NAME, FIRST, COUNT, LEFT, INO, OLD, NAMES, ROOT, INDEX = range(10)


class Group(object):
    """The roots on one filesystem and their candidates, in walk order (target mode)."""

    def __init__(self, roots, target_bytes):
        self.roots = roots
        self.target_bytes = target_bytes
        self.records = []
        self.stamps = array.array("q")
        self.blocks = array.array("q")
        self.inodes = array.array("Q")
        self.links = {}  # candidate index -> (dev, ino, nlink) for hard-linked files
        self.state = None  # bytearray: 0 pending, 1 chosen this round, 2 done


class Cleaner(object):
    """Decides and deletes. Streaming: each file is judged and deleted as the walk meets it (memory stays flat).
    Target: candidates are collected, the oldest are chosen until the free-space target, then deleted."""

    BATCH = 4096  # directory entries read ahead (names and types only; every decision uses a fresh lstat)
    MAX_DEPTH = 256  # deeper trees are reported, not walked: each level holds a directory descriptor open
    MAX_ERRORS = 1000
    MAX_ROUNDS = 10  # target mode: further rounds when the space did not come back as the file sizes predicted

    def __init__(self, settings, check_mode, opened=None, now_ns=None):
        self.settings = settings
        self.check_mode = check_mode
        self.opened = opened
        now_ns = now_ns if now_ns is not None else time.time_ns()
        self.cutoff = now_ns - int(settings.age_seconds * NS)
        self.stamp = operator.attrgetter(settings.stamp)
        self.deleted = self.freed = self.dirs_removed = 0
        self.kept = dict.fromkeys(KEPT, 0)
        self.errors = []
        self.error_count = 0
        self.sample = []
        self.links = {}  # check mode: (dev, ino) -> links of a hard-linked file still to go

    # Bookkeeping ------------------------------------------------------------------------------------------------------
    def error(self, path, exc):
        self.error_count += 1
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append({"path": printable(path), "error": exc if isinstance(exc, str) else os_error_text(exc)})

    def excluded(self, name, relative):
        return any(p.match(name) or p.match(relative) for p in self.settings.excludes)

    def name_reason(self, name, relative):
        """None when the name may go, else why it stays (relative: the path under the root)."""
        if self.settings.excludes and self.excluded(name, relative):
            return "excluded"
        if not self.settings.match_all and not any(p.match(name) for p in self.settings.patterns):
            return "not_matched"
        return None

    def freed_by(self, info):
        """Bytes an unlink frees: the allocated blocks, once the last link of a hard-linked file goes."""
        if info.st_nlink <= 1:
            return info.st_blocks * 512
        if not self.check_mode:
            return 0  # the lstat right before the last link's unlink shows st_nlink == 1
        key = (info.st_dev, info.st_ino)
        left = self.links.get(key, info.st_nlink) - 1
        if left > 0:
            self.links[key] = left
            return 0
        self.links.pop(key, None)
        return info.st_blocks * 512

    def took(self, path, freed):
        self.deleted += 1
        self.freed += freed
        if len(self.sample) < self.settings.sample_size:
            self.sample.append(printable(path))

    # Streaming --------------------------------------------------------------------------------------------------------
    def stream(self, root):
        self._dir(root, root.fd, root.prefix, "", 0, None, None)

    def _dir(self, root, fd, prefix, relative, depth, group, record):
        """Judge every entry of one directory, then walk its subdirectories; return how many entries stay.

        group is None: a file that may go is deleted at once (check mode: counted). Else it is collected in group and
        record (target mode) and stays for now.
        """
        try:
            entries = os.scandir(fd)
        except OSError as exc:
            self.error(prefix, exc)
            return 1
        lstat, unlink, stamp, ifmt, ifreg, iflnk = os.lstat, os.unlink, self.stamp, stat.S_IFMT(0o177777), stat.S_IFREG, stat.S_IFLNK
        cutoff, min_size, opened, kept = self.cutoff, self.settings.min_size, self.opened, self.kept
        filtered, name_reason, check_mode = self.settings.filtered, self.name_reason, self.check_mode
        limit = self.settings.max_files - self.deleted if self.settings.max_files else -1
        sample, sample_room = self.sample, self.settings.sample_size - len(self.sample)
        if group is not None:
            names = []
            add_name, add_stamp, add_blocks, add_inode = names.append, group.stamps.append, group.blocks.append, group.inodes.append
        subdirs = []
        left = too_young = deleted = freed = 0
        with entries:
            while True:
                chunk = list(itertools.islice(entries, self.BATCH))
                if not chunk:
                    break
                for entry in chunk:
                    name = entry.name
                    try:
                        if entry.is_dir(follow_symlinks=False):  # d_type: no system call
                            subdirs.append(name)
                            continue
                    except OSError:
                        continue  # gone meanwhile
                    if filtered:
                        reason = name_reason(name, relative + name)
                        if reason:
                            kept[reason] += 1
                            left += 1
                            continue
                    try:
                        info = lstat(name, dir_fd=fd)  # fresh: type, age, size and inode as they are now
                    except OSError:
                        continue  # gone meanwhile
                    mode = info.st_mode & ifmt
                    if mode != ifreg and mode != iflnk:
                        kept["not_regular"] += 1
                        left += 1
                        continue
                    age = stamp(info)
                    if age > cutoff:
                        too_young += 1
                        left += 1
                        continue
                    if info.st_size < min_size:
                        kept["too_small"] += 1
                        left += 1
                        continue
                    if opened is not None and (info.st_dev, info.st_ino) in opened:
                        kept["open"] += 1
                        left += 1
                        continue
                    if group is not None:  # target mode: a candidate, decided later
                        if info.st_nlink > 1:
                            group.links[len(group.stamps)] = (info.st_dev, info.st_ino, info.st_nlink)
                        add_stamp(age)
                        add_blocks(info.st_blocks * 512)
                        add_inode(info.st_ino)
                        add_name(name)
                        left += 1
                        continue
                    if deleted == limit:
                        kept["limit"] += 1
                        left += 1
                        continue
                    if not check_mode:
                        try:
                            unlink(name, dir_fd=fd)  # right after the lstat that judged it
                        except OSError as exc:
                            if exc.errno != errno.ENOENT:
                                self.error(prefix + name, exc)
                                left += 1
                            continue
                    deleted += 1
                    freed += info.st_blocks * 512 if info.st_nlink == 1 else self.freed_by(info)
                    if sample_room > 0:
                        sample.append(printable(prefix + name))
                        sample_room -= 1
        self.deleted += deleted
        self.freed += freed
        kept["too_young"] += too_young
        if group is not None:
            record[COUNT] = len(names)
            record[NAMES] = "\0".join(names)
        for name in subdirs:
            left += self._subdir(root, fd, name, prefix, relative, depth, group, record)
        if record is not None:
            record[LEFT] = left
        return left

    def _subdir(self, root, fd, name, prefix, relative, depth, group, record):
        """Walk one subdirectory; return 0 when it is gone afterwards, else 1."""
        child_rel = relative + name
        if self.settings.excludes and (self.excluded(name, child_rel) or self.excluded(name, child_rel + "/")):
            self.kept["excluded"] += 1
            return 1
        if depth >= self.MAX_DEPTH:
            self.error(prefix + name, "nested deeper than %d levels; not walked" % self.MAX_DEPTH)
            return 1
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:  # swapped for a symlink (ELOOP/ENOTDIR), gone, or not readable
            if exc.errno == errno.ENOENT:
                return 0
            self.error(prefix + name, exc)
            return 1
        try:
            info = os.fstat(child)
            if self.settings.one_fs and not self.same_mount(root, child, info):
                self.kept["other_fs"] += 1
                return 1
            old = info.st_mtime_ns <= self.cutoff  # the directory's own age, read before the walk changes it
            child_record = None
            if group is not None:
                child_record = [record[INDEX], name, len(group.stamps), 0, 0, info.st_ino, old, "", root, len(group.records)]
                group.records.append(child_record)
            left = self._dir(root, child, prefix + name + "/", child_rel + "/", depth + 1, group, child_record)
        finally:
            os.close(child)
        if group is not None or not (self.settings.remove_dirs and left == 0 and old):
            return 1
        return self.remove_dir(fd, name, info.st_ino, prefix + name)

    def same_mount(self, root, fd, info):
        if info.st_dev != root.dev:
            return False
        return not root.check_mnt or mount_id(fd) == root.mnt

    def remove_dir(self, parent_fd, name, ino, path):
        """rmdir an empty directory if it is still the one the walk saw; 0 when it went (or would), else 1."""
        if self.check_mode:
            self.dirs_removed += 1
            return 0
        try:
            now = os.lstat(name, dir_fd=parent_fd)
            if now.st_ino != ino or not stat.S_ISDIR(now.st_mode):
                return 1
            os.rmdir(name, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return 0
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                self.error(path, exc)
            return 1
        self.dirs_removed += 1
        return 0

    # Target mode ------------------------------------------------------------------------------------------------------
    def to_target(self, group):
        """Collect the candidates of the group's roots, then delete the oldest until the target is met."""
        for root in group.roots:
            record = [-1, None, len(group.stamps), 0, 0, root.ino, False, "", root, len(group.records)]
            group.records.append(record)
            self._dir(root, root.fd, root.prefix, "", 0, group, record)
        group.state = bytearray(len(group.stamps))
        free = usage(group.roots[0].fd)["free"]
        met = free >= group.target_bytes
        rounds = 0
        while not met and rounds < (1 if self.check_mode else self.MAX_ROUNDS):
            rounds += 1
            planned = self.choose(group, group.target_bytes - free)
            if planned is None:
                break
            if self.check_mode:
                self._predict_chosen(group)
                free += planned
            else:
                self._delete_chosen(group)
                free = usage(group.roots[0].fd)["free"]
            met = free >= group.target_bytes
        pending = group.state.count(0)
        if pending:
            self.kept["limit" if self.limit_reached() else "not_needed"] += pending
        if self.settings.remove_dirs:
            self._remove_recorded_dirs(group)
        return met

    def limit_reached(self):
        return bool(self.settings.max_files) and self.deleted >= self.settings.max_files

    def choose(self, group, need):
        """Mark (state 1) the oldest pending candidates whose freed space reaches need; the planned bytes, or None."""
        state, stamps = group.state, group.stamps
        budget = self.settings.max_files - self.deleted if self.settings.max_files else None
        if budget is not None and budget <= 0:
            return None
        fresh = 1 not in state and 2 not in state
        pending = range(len(stamps)) if fresh else [index for index in range(len(stamps)) if state[index] == 0]
        if not len(pending):
            return None
        if fresh and (budget is None or budget >= len(pending)):
            total = self._total_bytes(group)
            if total < need:  # not enough even with all of them: all go (the same set in any order, no sort)
                state[:] = b"\x01" * len(stamps)
                return total
        planned = chosen = 0
        counts = {}
        for index in self._oldest_first(group, pending, need, budget):
            planned += self._planned_bytes(group, index, counts)
            state[index] = 1
            chosen += 1
            if planned >= need or (budget is not None and chosen >= budget):
                break
        return planned

    @staticmethod
    def _total_bytes(group):
        """What deleting every candidate frees: a hard-linked file counts once, when all its links are candidates."""
        total = sum(group.blocks)
        inodes = {}
        for index, (dev, ino, nlink) in group.links.items():
            total -= group.blocks[index]
            seen = inodes.setdefault((dev, ino), [0, nlink, group.blocks[index]])
            seen[0] += 1
        return total + sum(size for seen, nlink, size in inodes.values() if seen >= nlink)

    def _planned_bytes(self, group, index, counts):
        link = group.links.get(index)
        if link is None:
            return group.blocks[index]
        key = (link[0], link[1])
        seen = counts.get(key, 0) + 1
        counts[key] = seen
        return group.blocks[index] if seen >= link[2] else 0

    @staticmethod
    def _oldest_first(group, pending, need, budget):
        """Pending candidate indexes, oldest first (ties in walk order); without sorting when all must go."""
        stamps, blocks = group.stamps, group.blocks
        if budget is None or budget >= len(pending):
            if sum(blocks[index] for index in pending) < need:
                return pending  # not enough even with all of them: all go, in walk order (same set, no sort)
        base = min(stamps[index] for index in pending)
        shift = len(stamps).bit_length()
        mask = (1 << shift) - 1
        keys = [((stamps[index] - base) << shift) | index for index in pending]
        keys.sort()
        return (key & mask for key in keys)

    def _records_with_chosen(self, group):
        state = group.state
        for record in group.records:
            first, count = record[FIRST], record[COUNT]
            if not count:
                continue
            if state.count(1, first, first + count) == count:  # all of them (the usual case): no list
                chosen = range(first, first + count)
            else:
                chosen = [index for index in range(first, first + count) if state[index] == 1]
            if chosen:
                yield record, chosen

    def _predict_chosen(self, group):
        counts = {}
        for record, chosen in self._records_with_chosen(group):
            names = record[NAMES].split("\0")
            for index in chosen:
                group.state[index] = 2
                record[LEFT] -= 1
                self.took(record[ROOT].prefix + self._relative(group, record) + names[index - record[FIRST]],
                          self._planned_bytes(group, index, counts))

    def _delete_chosen(self, group):
        """Open each directory again from the pinned root, check each chosen file again, unlink it."""
        opener = Opener(group, self)
        state, inodes, lstat, unlink, stamp, cutoff = group.state, group.inodes, os.lstat, os.unlink, self.stamp, self.cutoff
        ifmt, ifreg, iflnk, min_size, opened = stat.S_IFMT(0o177777), stat.S_IFREG, stat.S_IFLNK, self.settings.min_size, self.opened
        try:
            for record, chosen in self._records_with_chosen(group):
                prefix = record[ROOT].prefix + self._relative(group, record)
                try:
                    fd = opener.open(record)
                except (OSError, Moved) as exc:
                    self.kept["replaced"] += len(chosen)
                    for index in chosen:
                        state[index] = 2
                    if isinstance(exc, OSError) and exc.errno != errno.ENOENT:
                        self.error(prefix, exc)
                    continue
                names, first = record[NAMES].split("\0"), record[FIRST]
                if isinstance(chosen, range):  # every candidate of the directory: no index arithmetic per file
                    state[first:first + len(chosen)] = b"\x02" * len(chosen)
                    work = zip(names, inodes[first:first + len(chosen)])
                else:
                    for index in chosen:
                        state[index] = 2
                    work = [(names[index - first], inodes[index]) for index in chosen]
                sample, sample_room = self.sample, self.settings.sample_size - len(self.sample)
                deleted = freed = gone = 0
                for name, inode in work:
                    try:
                        info = lstat(name, dir_fd=fd)  # the same rules again, right before the unlink
                    except OSError:
                        gone += 1  # gone meanwhile
                        continue
                    mode = info.st_mode & ifmt
                    if (info.st_ino != inode or (mode != ifreg and mode != iflnk) or stamp(info) > cutoff
                            or info.st_size < min_size or (opened is not None and (info.st_dev, info.st_ino) in opened)):
                        self.kept["replaced"] += 1  # replaced, touched or opened since the walk: it stays
                        continue
                    try:
                        unlink(name, dir_fd=fd)
                    except OSError as exc:
                        if exc.errno == errno.ENOENT:
                            gone += 1
                        else:
                            self.error(prefix + name, exc)
                        continue
                    deleted += 1
                    freed += info.st_blocks * 512 if info.st_nlink == 1 else self.freed_by(info)
                    if sample_room > 0:
                        sample.append(printable(prefix + name))
                        sample_room -= 1
                record[LEFT] -= deleted + gone
                self.deleted += deleted
                self.freed += freed
        finally:
            opener.close()

    @staticmethod
    def _relative(group, record):
        parts = []
        while record[PARENT] != -1:
            parts.append(record[NAME])
            record = group.records[record[PARENT]]
        return "".join(part + "/" for part in reversed(parts))

    def _remove_recorded_dirs(self, group):
        """Children before parents: a directory goes when nothing stays in it and it was old before the walk."""
        opener = Opener(group, self) if not self.check_mode else None
        try:
            for record in reversed(group.records):
                if record[PARENT] == -1 or record[LEFT] != 0 or not record[OLD]:
                    continue
                parent = group.records[record[PARENT]]
                path = record[ROOT].prefix + self._relative(group, record)
                if opener is None:
                    gone = self.remove_dir(None, record[NAME], record[INO], path) == 0
                else:
                    try:
                        parent_fd = opener.open(parent)
                    except (OSError, Moved):
                        continue
                    gone = self.remove_dir(parent_fd, record[NAME], record[INO], path) == 0
                if gone:
                    parent[LEFT] -= 1
        finally:
            if opener is not None:
                opener.close()


class Moved(Exception):
    """A recorded directory is no longer the one the walk saw."""


class Opener(object):
    """Opens recorded directories again from the pinned root descriptor, one component at a time with O_NOFOLLOW,
    checking each is the directory the walk saw (same inode, same mount); keeps the current chain open."""

    def __init__(self, group, cleaner):
        self.group = group
        self.cleaner = cleaner
        self.stack = []  # [(record index, fd, owned)]

    def open(self, record):
        chain = []
        while True:
            chain.append(record)
            if record[PARENT] == -1:
                break
            record = self.group.records[record[PARENT]]
        chain.reverse()
        keep = 0
        while keep < len(self.stack) and keep < len(chain) and self.stack[keep][0] == chain[keep][INDEX]:
            keep += 1
        self._pop_to(keep)
        for record in chain[keep:]:
            if record[PARENT] == -1:
                self.stack.append((record[INDEX], record[ROOT].fd, False))
                continue
            fd = os.open(record[NAME], DIR_FLAGS, dir_fd=self.stack[-1][1])
            self.stack.append((record[INDEX], fd, True))
            info = os.fstat(fd)
            if info.st_ino != record[INO] or (self.cleaner.settings.one_fs and not self.cleaner.same_mount(record[ROOT], fd, info)):
                raise Moved(record[NAME])
        return self.stack[-1][1]

    def _pop_to(self, size):
        while len(self.stack) > size:
            dummy, fd, owned = self.stack.pop()
            if owned:
                os.close(fd)

    def close(self):
        self._pop_to(0)


# --- one run -----------------------------------------------------------------------------------------------------------

def clean(params, check_mode):
    """Validate, pin the roots, clean; the result dict (with warnings), or Refused before anything is deleted."""
    started = time.time()
    settings = Settings(params)
    opened = scan_open_files() if settings.skip_open else None  # usage_only too: refused as early as possible
    mounts = read_mounts()
    roots = []
    try:
        for path in settings.paths:
            roots.append(open_root(path, mounts))
        return _run(settings, roots, check_mode, opened, started)
    finally:
        for root in roots:
            root.close()


def _run(settings, roots, check_mode, opened, started):
    warnings = []
    if settings.one_fs and roots[0].mnt is None:
        warnings.append("this kernel shows no mount ids in /proc/self/fdinfo: bind mounts of the same filesystem "
                        "inside a root cannot be told apart and may be walked")
    groups = []
    for root in roots:
        group = next((g for g in groups if g.roots[0].dev == root.dev), None)
        if group is None:
            groups.append(Group([root], None))
        else:
            group.roots.append(root)
    cleaner = Cleaner(settings, check_mode, opened)
    filesystems = []
    for group in groups:
        before = usage(group.roots[0].fd)
        target = None
        if settings.target_mode:
            target = max(settings.target_bytes or 0,
                         int((before["used"] + before["free"]) * (settings.target_percent or 0) / 100.0))
            group.target_bytes = target
        met = True
        if settings.usage_only:
            met = target is None or before["free"] >= target
        elif target is None:
            for root in group.roots:
                cleaner.stream(root)
        else:
            met = cleaner.to_target(group)
        after = usage(group.roots[0].fd)
        if not check_mode and target is not None:
            met = after["free"] >= target
        filesystems.append({"paths": [root.path for root in group.roots], "usage_before": before, "usage_after": after,
                            "target_free_bytes": target, "target_met": met})
    first = filesystems[0]
    for entry in filesystems:
        if roots[0].path in entry["paths"]:
            first = entry
    result = {"deleted": cleaner.deleted,
              "bytes_freed": cleaner.freed, "dirs_removed": cleaner.dirs_removed, "kept": cleaner.kept,
              "errors": cleaner.errors, "error_count": cleaner.error_count,
              "usage_before": first["usage_before"], "usage_after": first["usage_after"],
              "target_met": all(entry["target_met"] for entry in filesystems), "filesystems": filesystems,
              "sample": cleaner.sample, "duration": round(time.time() - started, 3)}
    return result, warnings
