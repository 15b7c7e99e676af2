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
  - Deletes regular files (and symlinks, as links) under O(paths) that match O(patterns), do not match O(excludes),
    are older than O(age) and at least O(min_size), in one pass over each tree (what
    C(find ROOT -xdev -type f -mmin +N -delete) does, with the safety a remediation that runs unattended as root needs).
  - With O(target_free_percent) or O(target_free_bytes) it deletes the B(oldest) candidates first and stops as soon as
    the filesystem of the root has that much free space (the space a file frees is its allocated blocks; a hard-linked
    file frees nothing until its last link goes). Roots on the same filesystem share one oldest-first order.
  - "Roots: every path must be absolute, inside one of O(allowed_roots), and free of symlinks. C(/) is never cleaned.
    A path (or allowed root) that is, contains or lies inside a protected system tree is refused unless it is named
    exactly in O(allow_protected_roots). The protected trees: C(/bin), C(/boot), C(/dev), C(/efi), C(/etc), C(/home),
    C(/lib), C(/lib32), C(/lib64), C(/libx32), C(/lost+found), C(/media), C(/mnt), C(/nix), C(/opt), C(/proc),
    C(/root), C(/run), C(/sbin), C(/snap), C(/srv), C(/sys), C(/usr), and under C(/var): C(backups), C(cache), C(db),
    C(empty), C(lib), C(local), C(lock), C(log), C(mail), C(opt), C(run), C(spool), C(www), C(yp) (so C(/var) itself
    is refused too). C(/tmp), C(/var/tmp) and their subtrees are allowed. Roots on pseudo filesystems (proc, sysfs,
    devtmpfs, cgroup...) are always refused."
  - "How nothing outside a root can be reached: each root is opened by walking from C(/) one component at a time with
    C(O_NOFOLLOW|O_DIRECTORY), and only that directory descriptor is used afterwards (the path is never resolved
    again), so swapping any directory above or inside the root for a symlink cannot redirect the run. Directories
    are opened relative to their parent's descriptor, files are deleted with C(unlinkat) relative to their
    directory's descriptor; symlinks are never followed. Other mounts inside a root, bind mounts of the same
    filesystem included (compared by mount id), are left alone (O(one_file_system))."
  - "Only regular files and symlinks may go: sockets, fifos and device nodes stay (counted in RV(kept) as
    C(not_regular)). Type, age, size and inode come from an C(lstat) made right before each unlink; in target mode
    each chosen file is checked again (same inode, still old enough, still not open) right before its unlink, and its
    directory is opened again from the pinned root and must be the same directory."
  - A file that cannot be deleted (permission, immutable attribute) is reported in RV(errors); the run goes on.
    Names that are not valid UTF-8 are returned with C(\\xNN) escapes.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Runs the same walk and decisions and reports what would go (counts, bytes, emptied directories, whether the
      target would be met, a sample), deleting nothing. Target mode is predicted from the files' allocated blocks.
  diff_mode:
    support: none
    details: A list of deleted files is not a useful diff; RV(sample) shows some of them.
options:
  paths:
    description: Directories to clean (absolute, no symlink on the way, none inside another).
    type: list
    elements: path
    required: true
  allowed_roots:
    description: Directories under which cleaning is allowed at all; every path must be inside one.
    type: list
    elements: path
    default: [/tmp, /var/tmp]
  allow_protected_roots:
    description:
      - Exact directories that may be used in O(paths) or O(allowed_roots) although they are, contain or lie inside a
        protected system tree (see the description), for example V(/var/cache/myapp/tmp). Only an exact match counts.
        C(/) cannot be listed.
    type: list
    elements: path
    default: []
  patterns:
    description: Shell-style patterns a file name must match (names only; a pattern with C(/) is refused).
    type: list
    elements: str
    default: ['*']
  excludes:
    description:
      - Shell-style patterns of files and directories to keep, matched against the name and against the path relative
        to the root (V(keep/*), V(*.lock)); an excluded directory is not walked.
      - An absolute pattern, or one with an empty, C(.) or C(..) component, can never match and is refused.
    type: list
    elements: str
    default: []
  age:
    description:
      - Minimum age, as seconds or with a unit (V(90s), V(30m), V(2h), V(7d), V(1w)); V(0) for any age.
      - Units are lower case; V(M) is refused as ambiguous (use V(m) for minutes, V(d) or V(w) for longer).
    type: str
    default: '0'
  age_stamp:
    description: Which time stamp of a file measures its age (directories are judged by their modification time).
    type: str
    choices: [mtime, atime, ctime]
    default: mtime
  min_size:
    description: Minimum size (V(0), V(512k), V(10M), V(1G)).
    type: str
    default: '0'
  target_free_percent:
    description: Stop once the filesystem of the root has this percentage free (oldest files go first); between 0 and 100.
    type: float
  target_free_bytes:
    description: Stop once the filesystem of the root has this much free (V(5G)); oldest files go first.
    type: str
  remove_empty_dirs:
    description:
      - Remove directories that are empty after the run (never a root), and only when their own modification time,
        read before anything in them was deleted, is older than O(age) (a fresh empty directory stays).
    type: bool
    default: false
  one_file_system:
    description:
      - Do not descend into other mounts inside a root, bind mounts of the same filesystem included.
      - With V(false), mounts inside a root are walked too, whatever filesystem (and whatever tree) they show.
    type: bool
    default: true
  skip_open_files:
    description:
      - Keep files that a process has open (scans C(/proc/*/fd) once, at the start).
      - Refused unless the module runs as root and can read every process's descriptors (otherwise open files of other
        users' processes could not be seen and would be deleted).
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
  usage_only:
    description: Validate the options, open the roots and report the usage of their filesystems; walk and delete nothing.
    type: bool
    default: false
notes:
  - Runs on the managed host with the Python standard library only (Linux, it reads C(/proc/self/fdinfo) and
    C(/proc/self/mountinfo)).
  - Like C(find -delete), a file replaced by a fresh copy in the microseconds between the C(lstat) and the C(unlink)
    can still be deleted; POSIX has no unlink-if-unchanged.
seealso:
  - name: systemd-tmpfiles
    description: The age rules and mount handling this module follows.
    link: https://www.freedesktop.org/software/systemd/man/latest/tmpfiles.d.html
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
  become: true
  register: cleanup

- name: What would go (dry run)
  selfheal.devops.tempfile_cleanup:
    paths: [/var/tmp/app-cache]
    age: 7d
  check_mode: true

- name: A cache under a protected tree, named explicitly
  selfheal.devops.tempfile_cleanup:
    paths: [/var/cache/myapp/tmp]
    allowed_roots: [/var/cache/myapp/tmp]
    allow_protected_roots: [/var/cache/myapp/tmp]
    age: 1d
"""

RETURN = r"""
deleted:
  description: Files (and symlinks) deleted, or that would be in check mode.
  returned: always
  type: int
  sample: 18402
bytes_freed:
  description: Disk space released (allocated blocks; a hard-linked file counts when its last link goes).
  returned: always
  type: int
dirs_removed:
  description: Empty directories removed (or that would be in check mode).
  returned: always
  type: int
kept:
  description:
    - Files kept, by reason; C(not_regular) counts sockets, fifos and device nodes, C(not_needed) candidates left because
      the target was met, C(replaced) chosen files that changed between the walk and their delete (target mode).
  returned: always
  type: dict
  sample: {"too_young": 120, "excluded": 4, "too_small": 0, "not_matched": 9, "not_regular": 1, "open": 1, "other_fs": 0,
           "limit": 0, "not_needed": 3000, "replaced": 0}
errors:
  description: Files and directories that could not be handled, with the reason (at most 1,000; see RV(error_count)).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/tmp/app/locked.tmp", "error": "Operation not permitted (EPERM)"}]
error_count:
  description: How many errors there were in all.
  returned: always
  type: int
usage_before:
  description: The filesystem of the first path before cleaning (total, used, free in bytes, used_percent).
  returned: always
  type: dict
usage_after:
  description: The same after cleaning (in check mode, as it is, since nothing was deleted).
  returned: always
  type: dict
target_met:
  description: Whether the free-space target is met on every filesystem (in check mode, would be); true without a target.
  returned: always
  type: bool
filesystems:
  description: Per filesystem - its paths, usage_before, usage_after, target_free_bytes (null without a target), target_met.
  returned: always
  type: list
  elements: dict
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils._tempfiles import Refused, clean, printable


def cleanup(params, check_mode):
    """Run the cleanup; (changed, result, diff, warnings). Raises Refused before anything is deleted."""
    result, warnings = clean(params, check_mode)
    return result["deleted"] > 0 or result["dirs_removed"] > 0, result, None, warnings


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            allowed_roots=dict(type="list", elements="path", default=["/tmp", "/var/tmp"]),
            allow_protected_roots=dict(type="list", elements="path", default=[]),
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
            usage_only=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        changed, result, dummy, warnings = cleanup(module.params, module.check_mode)
    except Refused as error:
        module.fail_json(refused=True, deleted=0, **error.to_fail_kwargs())
    except OSError as error:  # the root itself vanished or became unreadable after it was opened
        module.fail_json(msg="tempfile_cleanup stopped: %s" % printable(str(error)), deleted=0)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**dict(result, changed=changed))


if __name__ == "__main__":
    main()
