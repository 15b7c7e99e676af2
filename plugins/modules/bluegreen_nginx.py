#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: bluegreen_nginx
short_description: Set the active colour of an nginx blue/green router safely (validate, atomic rename, graceful reload)
version_added: 0.1.0
description:
  - The active colour lives in a small file (O(active_file)) that the main nginx configuration includes,
    for example a C(map) setting the variable used by C(proxy_pass). This module replaces that file with
    O(content) and reloads nginx gracefully, in an order that never leaves a broken configuration in place.
  - The current colour is read from the file first (the marker line C(bluegreen_switch_active <colour>) after
    a colon, or the C(default <upstream>;) of the map, translated through O(upstreams)). When it already is
    O(colour), nothing is written (C(changed=false)).
  - Otherwise O(content) goes to a temporary file beside O(active_file); a temporary copy of O(conf) whose
    C(include) of the active file points at that candidate is validated with C(nginx -t -c <copy> -p <prefix>)
    (so the whole configuration is checked with the new file, not the live one); only then is the candidate
    renamed over O(active_file) (atomic, keeping its owner and mode) and nginx reloaded with C(nginx -s reload).
    When the reload command fails, the previous file is put back.
  - In check mode it reports whether the colour would change and the diff of the file; it writes nothing.
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  active_file:
    description: The file holding the active colour. It must exist and be included by O(conf) directly.
    type: path
    required: true
  content:
    description: The new content of O(active_file) (the role renders it from a template).
    type: str
    required: true
  colour:
    description: The colour O(content) makes active.
    type: str
    required: true
  upstreams:
    description:
      - Upstream name of each colour, used to recognise the current colour in a file without the marker line.
    type: dict
    default: {blue: blue, green: green}
  conf:
    description: The main nginx configuration (C(-c)).
    type: path
    default: /etc/nginx/nginx.conf
  prefix:
    description: The nginx prefix (C(-p)); empty for the compiled-in one.
    type: str
    default: ""
  binary:
    description: The nginx binary.
    type: str
    default: nginx
  validate:
    description:
      - Validate the whole configuration with the candidate before it goes into place. Needs an C(include) of
        O(active_file) (absolute, or relative to the directory of O(conf)) in O(conf) itself.
    type: bool
    default: true
  reload:
    description: Reload nginx (C(nginx -s reload)) after the file changed.
    type: bool
    default: true
  mode:
    description: Mode of O(active_file) if it had to be created; an existing file keeps its mode and owner.
    type: str
    default: "0644"
seealso:
  - module: selfheal.devops.bluegreen_probe
  - module: selfheal.devops.haproxy_runtime
author:
  - selfheal.devops contributors (@selfheal-devops)
"""

EXAMPLES = r"""
- name: Send the traffic to green
  selfheal.devops.bluegreen_nginx:
    active_file: /etc/nginx/bluegreen/active.conf
    colour: green
    content: |
      # bluegreen_switch_active: green
      map $host $bluegreen_upstream { default green; }
"""

RETURN = r"""
previous:
  description: The colour active before (null if it could not be recognised).
  returned: success
  type: str
  sample: blue
colour:
  description: The colour active now (in check mode, the one that would be).
  returned: success
  type: str
  sample: green
previous_content:
  description: The content of O(active_file) before, to restore it later (the role's revert does).
  returned: success
  type: str
commands:
  description: The nginx commands run (validation and reload), in order.
  returned: success
  type: list
  elements: str
started_at:
  description: Epoch time (seconds, on the managed host) when the module started.
  returned: success
  type: float
switched_at:
  description: Epoch time (seconds, on the managed host) when the reload was signalled; null when nothing changed.
  returned: success
  type: float
"""

import os
import re
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

MARKER = re.compile(r"bluegreen_switch_active:\s*([A-Za-z0-9_.-]+)")
MAP_DEFAULT = re.compile(r"(?m)^[^#\n]*\bdefault\s+([A-Za-z0-9_.:-]+)\s*;")


class SwitchError(Exception):
    """A clear failure; nothing (or the previous file) is in place."""


def current_colour(text, upstreams):
    """The colour a file makes active: marker line first, then the map default through `upstreams`."""
    match = MARKER.search(text)
    if match:
        return match.group(1)
    match = MAP_DEFAULT.search(text)
    if match:
        by_upstream = dict((upstream, colour) for colour, upstream in upstreams.items())
        return by_upstream.get(match.group(1))
    return None


def include_pattern(active_file, conf):
    """Regex matching `include <active_file>;` in the main config (absolute or relative spelling)."""
    spellings = [active_file, os.path.relpath(active_file, os.path.dirname(conf))]
    alternatives = "|".join(re.escape(path) for path in spellings)
    return re.compile(r"""(?m)^(\s*include\s+)(["']?)(?:%s)\2(\s*;)""" % alternatives)


def validation_config(conf_text, active_file, conf, candidate):
    pattern = include_pattern(active_file, conf)
    if not pattern.search(conf_text):
        raise SwitchError(
            "%s does not include %s directly (expected `include %s;` in its http block); the candidate file cannot "
            "be validated with the whole configuration. Include it there, or set validate=false" % (conf, active_file, active_file))
    return pattern.sub(lambda match: "%s%s%s" % (match.group(1), candidate, match.group(3)), conf_text)


class NginxSwitch(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.commands = []

    def nginx(self, *args):
        argv = [self.params["binary"]]
        if self.params["prefix"]:
            argv += ["-p", self.params["prefix"]]
        return argv + list(args)

    def run_command(self, argv, what):
        self.commands.append(" ".join(argv))
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            raise SwitchError("%s failed (rc %d): %s" % (what, rc, (err or out).strip()))

    def _temp(self, directory, data):
        handle, path = tempfile.mkstemp(dir=directory, prefix=".bluegreen_nginx.", suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            stream.write(to_bytes(data))
        return path

    def validate(self, candidate):
        conf = self.params["conf"]
        try:
            with open(conf, "rb") as stream:
                conf_text = to_text(stream.read(), errors="surrogate_or_strict")
        except (IOError, OSError) as error:
            raise SwitchError("cannot read the nginx configuration %s: %s" % (conf, error))
        # The copy sits beside the main config, so its relative includes resolve exactly as the real one's.
        copy = self._temp(os.path.dirname(conf), validation_config(conf_text, self.params["active_file"], conf, candidate))
        try:
            os.chmod(copy, 0o644)
            self.run_command(self.nginx("-t", "-q", "-c", copy), "nginx -t with the candidate %s" % self.params["active_file"])
        finally:
            os.unlink(copy)

    def run(self):
        params = self.params
        started_at = time.time()
        path = params["active_file"]
        if not os.path.isfile(path):
            raise SwitchError("the active colour file %s does not exist; it must exist and be included by %s" % (path, params["conf"]))
        with open(path, "rb") as stream:
            before = to_text(stream.read(), errors="surrogate_or_strict")
        previous = current_colour(before, params["upstreams"])
        after = params["content"]
        result = {"previous": previous, "colour": params["colour"], "previous_content": before, "commands": self.commands,
                  "started_at": started_at, "switched_at": None,
                  "diff": {"before": before, "after": before, "before_header": path, "after_header": path}}
        if previous == params["colour"] or (previous is None and before == after):
            result["colour"] = previous or params["colour"]
            return False, result
        result["diff"]["after"] = after
        if self.module.check_mode:
            return True, result
        candidate = self._temp(os.path.dirname(path), after)
        try:
            if params["validate"]:
                self.validate(candidate)
            os.chmod(candidate, int(params["mode"], 8))
            self.module.atomic_move(candidate, path)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)
        if params["reload"]:
            try:
                result["switched_at"] = time.time()
                self.run_command(self.nginx("-c", params["conf"], "-s", "reload"), "nginx -s reload")
            except SwitchError as error:
                restore = self._temp(os.path.dirname(path), before)
                self.module.atomic_move(restore, path)
                raise SwitchError("%s; %s was put back to its previous content (%s)" % (error, path, previous or "unknown colour"))
        else:
            result["switched_at"] = time.time()
        return True, result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            active_file=dict(type="path", required=True),
            content=dict(type="str", required=True),
            colour=dict(type="str", required=True),
            upstreams=dict(type="dict", default={"blue": "blue", "green": "green"}),
            conf=dict(type="path", default="/etc/nginx/nginx.conf"),
            prefix=dict(type="str", default=""),
            binary=dict(type="str", default="nginx"),
            validate=dict(type="bool", default=True),
            reload=dict(type="bool", default=True),
            mode=dict(type="str", default="0644"),
        ),
        supports_check_mode=True,
    )
    if not re.match(r"^0?[0-7]{3,4}$", module.params["mode"]):
        module.fail_json(msg="mode must be an octal string such as 0644, got %r" % module.params["mode"])
    switch = NginxSwitch(module)
    try:
        changed, result = switch.run()
    except SwitchError as error:
        module.fail_json(msg=str(error), commands=switch.commands)
    except (IOError, OSError) as error:
        module.fail_json(msg="cannot switch %s: %s" % (module.params["active_file"], error), commands=switch.commands)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
