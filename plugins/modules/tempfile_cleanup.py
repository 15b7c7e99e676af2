#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tempfile_cleanup
short_description: Delete old temporary files under allow-listed roots, safely and fast
version_added: 0.1.0
description:
  - Deletes files under O(paths) that match O(patterns), do not match O(excludes), are older than O(age) and at
    least O(min_size), in one pass over each tree (what C(find ROOT -type f -mmin +N -delete) does, with the
    safety a remediation that runs unattended needs).
  - With O(target_free_percent) or O(target_free_bytes) it deletes the B(oldest) candidates first and stops as
    soon as the filesystem of the root has that much free space.
  - "Safety: every path must be absolute and inside one of O(allowed_roots); C(/) and system directories are
    refused even when allowed; a root that is, or passes through, a symlink is refused; symlinks inside a root
    are never followed (a matching link is removed as a link, never its target); other filesystems mounted
    inside a root are left alone (O(one_file_system)); files open by a process can be kept
    (O(skip_open_files)). Deletes are made relative to directory file descriptors opened with C(O_NOFOLLOW),
    so a directory swapped for a symlink while the module runs cannot redirect a delete outside the root."
  - A file that cannot be deleted (permission, immutable attribute) is reported in RV(errors); the run goes on.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Walks the trees and reports counts, bytes and a sample of what would be deleted, deleting nothing.
  diff_mode:
    support: none
    details: A list of deleted files is not a useful diff; RV(sample) shows some of them.
options:
  paths:
    description: Directories to clean (absolute).
    type: list
    elements: path
    required: true
  allowed_roots:
    description: Directories under which cleaning is allowed at all; every path must resolve inside one.
    type: list
    elements: path
    default: [/tmp, /var/tmp]
  patterns:
    description: Shell-style patterns a file name must match.
    type: list
    elements: str
    default: ['*']
  excludes:
    description: Shell-style patterns (name or path relative to the root) of files and directories to keep.
    type: list
    elements: str
    default: []
  age:
    description: Minimum age, as seconds or with a unit (V(90s), V(30m), V(2h), V(7d), V(1w)); V(0) for any age.
    type: str
    default: '0'
  age_stamp:
    description: Which time stamp measures the age.
    type: str
    choices: [mtime, atime, ctime]
    default: mtime
  min_size:
    description: Minimum size (V(0), V(512k), V(10M), V(1G)).
    type: str
    default: '0'
  target_free_percent:
    description: Stop once the filesystem of the root has this percentage free (oldest files go first).
    type: float
  target_free_bytes:
    description: Stop once the filesystem of the root has this much free (V(5G)); oldest files go first.
    type: str
  remove_empty_dirs:
    description: Remove directories left empty (never the root itself).
    type: bool
    default: false
  one_file_system:
    description: Do not descend into other filesystems mounted inside a root.
    type: bool
    default: true
  skip_open_files:
    description: Keep files that a process has open (scans C(/proc/*/fd)).
    type: bool
    default: false
  max_files:
    description: Delete at most this many files in one run (V(0) for no limit).
    type: int
    default: 0
  sample_size:
    description: How many deleted (or, in check mode, deletable) paths to return in RV(sample).
    type: int
    default: 20
notes:
  - Runs on the managed host with the Python standard library only.
"""

EXAMPLES = r"""
- name: Free the disk behind a Dynatrace "low disk space" problem
  selfheal.devops.tempfile_cleanup:
    paths: [/var/tmp/app-cache, /tmp]
    allowed_roots: [/tmp, /var/tmp]
    age: 2d
    excludes: ["*.lock", "keep/*"]
    target_free_percent: 20
    skip_open_files: true
  register: cleanup

- name: What would go (dry run)
  selfheal.devops.tempfile_cleanup:
    paths: [/var/tmp/app-cache]
    age: 7d
  check_mode: true
"""

RETURN = r"""
deleted:
  description: Files (and symlinks) deleted, or that would be in check mode.
  returned: always
  type: int
  sample: 18402
bytes_freed:
  description: Bytes those files used (apparent size).
  returned: always
  type: int
dirs_removed:
  description: Empty directories removed.
  returned: always
  type: int
kept:
  description: Files kept, by reason.
  returned: always
  type: dict
  sample: {"too_young": 120, "excluded": 4, "too_small": 0, "not_matched": 9, "open": 1, "other_fs": 0, "limit": 0}
errors:
  description: Files that could not be deleted, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/tmp/app/locked.tmp", "error": "[Errno 1] Operation not permitted"}]
usage_before:
  description: The filesystem of the first root before cleaning (total, used, free in bytes, used_percent).
  returned: always
  type: dict
usage_after:
  description: The same after cleaning.
  returned: always
  type: dict
target_met:
  description: Whether the free-space target is met (true when there is no target).
  returned: always
  type: bool
sample:
  description: Some of the deleted (or deletable) paths.
  returned: always
  type: list
  elements: str
duration:
  description: Seconds the run took.
  returned: always
  type: float
"""

import errno
import fnmatch
import heapq
import operator
import os
import re
import stat
import time

from ansible.module_utils.basic import AnsibleModule

PROTECTED = frozenset(["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
                       "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/var/lib",
                       "/var/log", "/var/cache", "/var/spool", "/var/mail", "/var/opt", "/var/run", "/snap", "/nix"])
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZES = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """Unsafe or invalid input: nothing was deleted."""


def parse_amount(text, units, what):
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]?)\s*$", str(text))
    if not match or match.group(2).lower() not in units:
        raise Refused("%s %r is not a number with an optional unit (%s)" % (what, text, ", ".join(u for u in units if u)))
    return float(match.group(1)) * units[match.group(2).lower()]


def usage(path):
    vfs = os.statvfs(path)
    total, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
    used = total - vfs.f_bfree * vfs.f_frsize
    return {"total": total, "used": used, "free": free,
            "used_percent": round(100.0 * used / (used + free), 2) if used + free else 0.0}


def check_roots(paths, allowed):
    """Absolute, symlink-free roots inside an allowed, unprotected root; raises Refused otherwise."""
    allowed_real = []
    for root in allowed:
        if not os.path.isabs(root):
            raise Refused("allowed root %s is not absolute" % root)
        real = os.path.realpath(root)
        if real in PROTECTED or os.path.normpath(root) in PROTECTED:
            raise Refused("allowed root %s is a system directory; cleaning it is refused" % root)
        allowed_real.append(real)
    checked = []
    for path in paths:
        if not os.path.isabs(path):
            raise Refused("path %s is not absolute" % path)
        normal = os.path.normpath(path)
        real = os.path.realpath(path)
        if normal in PROTECTED or real in PROTECTED:
            raise Refused("path %s is a system directory; cleaning it is refused" % path)
        if real != normal:
            raise Refused("path %s is or passes through a symlink (resolves to %s); refused" % (path, real))
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in allowed_real):
            raise Refused("path %s is outside the allowed roots (%s)" % (path, ", ".join(allowed)))
        if not os.path.isdir(real):
            raise Refused("path %s is not a directory" % path)
        checked.append(real)
    return checked


def open_files():
    """(device, inode) of every file some process has open."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = "/proc/%s/fd" % pid
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                info = os.stat(os.path.join(fd_dir, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.add((info.st_dev, info.st_ino))
    return found


class Cleaner(object):
    """One pass over each tree. Deleting as it walks (streaming) or collecting the candidates (target mode)."""

    # Deeper trees are reported, not walked: each level holds a directory descriptor open.
    MAX_DEPTH = 256
    # Candidates are deleted in batches of at most this many per directory: memory stays flat in huge directories.
    BATCH = 4096

    def __init__(self, params, check_mode, now=None):
        self.check_mode = check_mode
        self.patterns = [re.compile(fnmatch.translate(p)) for p in params["patterns"]]
        self.match_all = "*" in params["patterns"]
        self.excludes = [re.compile(fnmatch.translate(p)) for p in params["excludes"]]
        self.min_age = parse_amount(params["age"], UNITS, "age")
        self.min_size = parse_amount(params["min_size"], SIZES, "min_size")
        self.stamp = operator.attrgetter("st_" + params["age_stamp"])
        self.cutoff = (now or time.time()) - self.min_age
        self.one_fs = params["one_file_system"]
        self.remove_dirs = params["remove_empty_dirs"]
        self.max_files = params["max_files"]
        self.sample_size = params["sample_size"]
        self.open = open_files() if params["skip_open_files"] else None
        self.deleted = self.bytes = self.dirs_removed = 0
        self.kept = dict.fromkeys(("too_young", "excluded", "too_small", "not_matched", "open", "other_fs", "limit"), 0)
        self.errors = []
        self.sample = []

    # Decisions ------------------------------------------------------------------------------------
    def excluded(self, name, relative):
        return any(p.match(name) or p.match(relative) for p in self.excludes)

    def name_reason(self, name, relative):
        """None when the name may go, else why it stays (relative: the path under the root)."""
        if self.excludes and self.excluded(name, relative):
            return "excluded"
        if not self.match_all and not any(p.match(name) for p in self.patterns):
            return "not_matched"
        return None

    def limit_reached(self):
        return self.max_files and self.deleted >= self.max_files

    # Walking --------------------------------------------------------------------------------------
    def clean_streaming(self, root):
        """Delete every candidate as the walk meets it: memory does not grow with the tree."""
        self._walk(root, None)

    def clean_to_target(self, root, enough):
        """Collect candidates compactly, then delete oldest first until enough() says the target is met."""
        heap = []
        self._walk(root, heap)
        heapq.heapify(heap)
        freed_in_check = 0
        while heap and not enough(freed_in_check) and not self.limit_reached():
            dummy, relative, size, inode = heapq.heappop(heap)
            if self.delete_relative(root, relative, size, inode):
                freed_in_check += size if self.check_mode else 0
        self.kept["limit"] += len(heap) if self.limit_reached() else 0

    def _walk(self, root, collect):
        root_fd = os.open(root, DIR_FLAGS)
        try:
            self._dir(root_fd, root.rstrip("/") + "/", "", os.fstat(root_fd).st_dev, collect, 0)
        finally:
            os.close(root_fd)

    def _dir(self, dir_fd, prefix, relative, root_dev, collect, depth):
        """Files of one directory first (the hot loop: no call per file), then its subdirectories.

        With collect (a list), candidates are appended as (stamp, relative path, size, inode); without it they are
        deleted at once, relative to dir_fd (opened with O_NOFOLLOW, so nothing outside the root can be reached).
        """
        try:
            entries = os.scandir(dir_fd)
        except OSError as exc:
            self.errors.append({"path": prefix, "error": str(exc)})
            return
        stamp, cutoff, min_size, opened = self.stamp, self.cutoff, self.min_size, self.open
        filtered = bool(self.excludes) or not self.match_all
        limit, kept, batch = self.max_files, self.kept, self.BATCH
        too_young = 0
        doomed, subdirs = [], []
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):  # d_type: no system call
                        subdirs.append(entry)
                        continue
                except OSError:
                    continue  # gone meanwhile
                name = entry.name
                if filtered:
                    reason = self.name_reason(name, relative + name)
                    if reason:
                        kept[reason] += 1
                        continue
                try:
                    info = entry.stat(follow_symlinks=False)  # one fstatat, links not followed
                except OSError:
                    continue
                if stamp(info) > cutoff:
                    too_young += 1
                    continue
                if info.st_size < min_size:
                    kept["too_small"] += 1
                    continue
                if opened is not None and (info.st_dev, info.st_ino) in opened:
                    kept["open"] += 1
                    continue
                if collect is not None:
                    collect.append((stamp(info), relative + name, info.st_size, info.st_ino))
                    continue
                if limit and self.deleted + len(doomed) >= limit:
                    kept["limit"] += 1
                    continue
                doomed.append((name, info.st_size))
                if len(doomed) >= batch:
                    self._unlink(dir_fd, prefix, doomed)
                    doomed = []
        # Deleting after the directory is read (not between reads) is measurably faster on tmpfs.
        self._unlink(dir_fd, prefix, doomed)
        kept["too_young"] += too_young
        for entry in subdirs:
            self._subdir(dir_fd, entry.name, prefix, relative, root_dev, collect, depth)

    def _unlink(self, dir_fd, prefix, doomed):
        """Delete (name, size) pairs of one directory; count what went, report what could not go."""
        unlink, check_mode, sample = os.unlink, self.check_mode, self.sample
        sampling = len(sample) < self.sample_size
        deleted = freed = 0
        for name, size in doomed:
            if not check_mode:
                try:
                    unlink(name, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        self.errors.append({"path": prefix + name, "error": str(exc)})
                    continue
            deleted += 1
            freed += size
            if sampling:
                sample.append(prefix + name)
                sampling = len(sample) < self.sample_size
        self.deleted += deleted
        self.bytes += freed

    def _subdir(self, dir_fd, name, prefix, relative, root_dev, collect, depth):
        child_rel = relative + name
        if self.excludes and (self.excluded(name, child_rel) or self.excluded(name, child_rel + "/")):
            self.kept["excluded"] += 1
            return
        if depth >= self.MAX_DEPTH:
            self.errors.append({"path": prefix + name, "error": "nested deeper than %d levels; not walked" % self.MAX_DEPTH})
            return
        try:
            child_fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:  # swapped for a symlink (ELOOP/ENOTDIR) or no permission
            self.errors.append({"path": prefix + name, "error": str(exc)})
            return
        try:
            if self.one_fs and os.fstat(child_fd).st_dev != root_dev:
                self.kept["other_fs"] += 1
                return
            self._dir(child_fd, prefix + name + "/", child_rel + "/", root_dev, collect, depth + 1)
        finally:
            os.close(child_fd)
        if self.remove_dirs and not self.check_mode:
            try:
                os.rmdir(name, dir_fd=dir_fd)
                self.dirs_removed += 1
            except OSError:
                pass  # not empty: something stayed

    def delete_relative(self, root, relative, size, inode):
        """Re-open each parent with O_NOFOLLOW, re-check the inode, then unlink: nothing can escape the root."""
        parts = relative.split("/")
        fds = []
        try:
            fd = os.open(root, DIR_FLAGS)
            fds.append(fd)
            for part in parts[:-1]:
                fd = os.open(part, DIR_FLAGS, dir_fd=fd)
                fds.append(fd)
            try:
                info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            except OSError:
                return False
            if info.st_ino != inode:
                return False
            before = self.deleted
            self._unlink(fd, root.rstrip("/") + "/" + relative[:-len(parts[-1])], [(parts[-1], size)])
            return self.deleted > before
        except OSError as exc:
            self.errors.append({"path": root.rstrip("/") + "/" + relative, "error": str(exc)})
            return False
        finally:
            for opened in reversed(fds):
                os.close(opened)


def run(module):
    params = module.params
    started = time.time()
    roots = check_roots(params["paths"], params["allowed_roots"])
    cleaner = Cleaner(params, module.check_mode)
    before = usage(roots[0])
    target_bytes = None
    if params["target_free_bytes"] is not None:
        target_bytes = parse_amount(params["target_free_bytes"], SIZES, "target_free_bytes")
    if params["target_free_percent"] is not None:
        if not 0 < params["target_free_percent"] < 100:
            raise Refused("target_free_percent must be between 0 and 100")
        by_percent = (before["used"] + before["free"]) * params["target_free_percent"] / 100.0
        target_bytes = max(target_bytes or 0, by_percent)
    for root in roots:
        if target_bytes is None:
            cleaner.clean_streaming(root)
        else:
            def enough(freed_in_check, root=root):
                return usage(root)["free"] + freed_in_check >= target_bytes

            cleaner.clean_to_target(root, enough)
    after = usage(roots[0])
    met = True if target_bytes is None else after["free"] + (cleaner.bytes if module.check_mode else 0) >= target_bytes
    return {"changed": cleaner.deleted > 0 or cleaner.dirs_removed > 0, "deleted": cleaner.deleted,
            "bytes_freed": cleaner.bytes, "dirs_removed": cleaner.dirs_removed, "kept": cleaner.kept,
            "errors": cleaner.errors, "usage_before": before, "usage_after": after, "target_met": met,
            "sample": cleaner.sample, "duration": round(time.time() - started, 3)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            allowed_roots=dict(type="list", elements="path", default=["/tmp", "/var/tmp"]),
            patterns=dict(type="list", elements="str", default=["*"]),
            excludes=dict(type="list", elements="str", default=[]),
            age=dict(type="str", default="0"),
            age_stamp=dict(type="str", choices=["mtime", "atime", "ctime"], default="mtime"),
            min_size=dict(type="str", default="0"),
            target_free_percent=dict(type="float"),
            target_free_bytes=dict(type="str"),
            remove_empty_dirs=dict(type="bool", default=False),
            one_file_system=dict(type="bool", default=True),
            skip_open_files=dict(type="bool", default=False),
            max_files=dict(type="int", default=0),
            sample_size=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except Refused as error:
        module.fail_json(msg=str(error), refused=True, deleted=0)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
