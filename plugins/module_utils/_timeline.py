# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An incident's timeline file: read it, append records under a lock, atomically. Private to selfheal.devops.

Shared by the incident_timeline module and the incident orchestrator (incident_sync).
"""

import fcntl
import json
import os
import time

from ansible_collections.selfheal.devops.plugins.module_utils._files import write_atomically


def read(path, keep_aside=True):
    """(records or None when there is no file, warning); a file that is not a timeline is moved aside."""
    try:
        with open(path) as handle:
            data = json.load(handle)
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            return data["records"], None
        problem = "has no records list"
    except (IOError, OSError) as error:
        if getattr(error, "errno", None) == 2:
            return None, None
        raise
    except ValueError as error:
        problem = "is not JSON (%s)" % error
    if not keep_aside:  # check mode
        return None, "timeline %s %s; it would be kept aside and a new one started" % (path, problem)
    kept = "%s.corrupt-%d" % (path, int(time.time()))
    os.rename(path, kept)
    return None, "timeline %s %s; kept as %s, a new one starts" % (path, problem, kept)


def run(params, check_mode):
    path = params["path"]
    directory = os.path.dirname(path) or "."
    writes = bool(params["append"]) or params["create"]
    if writes and not check_mode and not os.path.isdir(directory):
        os.makedirs(directory, 0o750)
    lock = os.open(directory, os.O_RDONLY) if os.path.isdir(directory) else None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        # No directory, no file: nothing to read.
        records, warning = read(path, keep_aside=not check_mode) if lock is not None else (None, None)
        result = {"exists": records is not None, "records": (records or []) + params["append"],
                  "appended": len(params["append"])}
        if warning:
            result["warning"] = warning
        if (params["append"] or (params["create"] and records is None)) and not check_mode:
            document = {"incident": params["incident"], "problem": params["problem"], "records": result["records"]}
            write_atomically(path, json.dumps(document, indent=4, sort_keys=True) + "\n")
        return result
    finally:
        if lock is not None:
            os.close(lock)
