# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The programs of a supervisord, for the process modules. Private to selfheal.devops.

Every question goes to supervisord's XML-RPC interface, at the address the configured `supervisorctl` command line
would use (its -s/-u/-p/-c options and the [supervisorctl] section of its configuration file, read as supervisorctl
reads them): a `supervisorctl` run is a Python start-up of about 0.1 CPU second, and a restart asks three questions.
When that address cannot be told for sure (another program such as sudo, an option this does not know, a
configuration it cannot read) or supervisord does not answer there, the command line itself is run, as before.
Runs on the managed host (Python 3.9+, standard library and ansible.module_utils only).
"""

import base64
import configparser
import http.client
import os
import re
import shutil
import socket
import xmlrpc.client
from urllib.parse import urlparse
from xml.parsers.expat import ExpatError

from ansible.module_utils.common.text.converters import to_text

DEFAULT_URL = "http://localhost:9001"  # supervisorctl's default serverurl
STATUS_TIMEOUT = 30.0
# supervisor.xmlrpc.Faults: the ones a restart meets, with supervisorctl's words for them
BAD_NAME, ALREADY_STARTED, NOT_RUNNING = 10, 60, 70
FAULT_WORDS = {BAD_NAME: "no such process", 20: "no such file", 21: "file is not executable",
               40: "abnormal termination", 50: "spawn error", ALREADY_STARTED: "already started",
               NOT_RUNNING: "not running"}
# `supervisorctl status NAME`: "NAME  RUNNING   pid 4242, uptime 0:01:00" or "NAME  EXITED  Nov 30 05:00 AM".
STATUS_LINE = re.compile(r"^\S+\s+([A-Z]+)(?:\s+pid (\d+),)?", re.MULTILINE)
DOWN = frozenset(["STOPPED", "EXITED", "FATAL", "BACKOFF"])
_OPTIONS = {"-c": "config", "--configuration": "config", "-s": "url", "--serverurl": "url",
            "-u": "username", "--username": "username", "-p": "password", "--password": "password"}
# Whatever keeps an answer from coming back: no socket, refused, a timeout, not HTTP, not XML-RPC, not supervisord.
_UNREACHABLE = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError, xmlrpc.client.ResponseError,
                ExpatError, ValueError, TypeError)


class _Unsure(Exception):
    pass


def _options(argv):
    """{config, url, username, password} given on a supervisorctl command line; _Unsure for anything else."""
    if not argv or os.path.basename(argv[0]) != "supervisorctl":
        raise _Unsure()
    found, rest = {}, list(argv[1:])
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if word in _OPTIONS and rest:
            found[_OPTIONS[word]] = rest.pop(0)
        elif equals and name.startswith("--") and name in _OPTIONS:
            found[_OPTIONS[name]] = value
        elif len(word) > 2 and word[:2] in _OPTIONS and not word.startswith("--"):
            found[_OPTIONS[word[:2]]] = word[2:]
        else:
            raise _Unsure()
    return found


def _default_config(program, which):
    """The configuration file supervisorctl finds without -c: its search path, from its own location."""
    path = program if os.sep in program else which(program)
    if not path:
        raise _Unsure()
    here = os.path.dirname(os.path.dirname(path))
    for candidate in (os.path.join(here, "etc", "supervisord.conf"), os.path.join(here, "supervisord.conf"),
                      "supervisord.conf", "etc/supervisord.conf", "/etc/supervisord.conf",
                      "/etc/supervisor/supervisord.conf"):
        if os.path.exists(candidate):
            return candidate
    return None


def _normalize(path):
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def _section(config, environ):
    """(serverurl, username, password) of a configuration's [supervisorctl] section, expanded as supervisor does."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        with open(config) as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error):
        raise _Unsure()
    if not parser.has_section("supervisorctl"):
        raise _Unsure()  # supervisorctl refuses such a file: let it say so
    expansions = dict(("ENV_%s" % key, value) for key, value in environ.items())
    here = os.path.dirname(_normalize(config))

    def value(option, default, **more):
        if not parser.has_option("supervisorctl", option):
            return default
        try:
            return parser.get("supervisorctl", option) % dict(expansions, **more)
        except (KeyError, ValueError, TypeError):
            raise _Unsure()

    return value("serverurl", DEFAULT_URL, here=here), value("username", None), value("password", None)


def server_of(argv, environ=None, which=shutil.which):
    """(serverurl, username, password) the supervisorctl command line argv would talk to, or None when that cannot be
    told for sure."""
    environ = os.environ if environ is None else environ
    try:
        options = _options(argv)
        config = options.get("config") or _default_config(argv[0], which)
        url, username, password = _section(config, environ) if config else (DEFAULT_URL, None, None)
    except _Unsure:
        return None
    url = options.get("url", url)
    if url.startswith("unix://"):
        url = "unix://" + _normalize(url[len("unix://"):])
    elif urlparse(url).scheme != "http":
        return None
    return url, options.get("username", username), options.get("password", password)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super(_UnixConnection, self).__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket or its HTTP port, with supervisorctl's basic authentication."""

    def __init__(self, url, username, password, timeout):
        super(_Transport, self).__init__()
        self.url = url
        self.timeout = timeout
        self.authorization = None
        if username:
            token = base64.b64encode(("%s:%s" % (username, password or "")).encode("utf-8")).decode("ascii")
            self.authorization = "Basic " + token

    def make_connection(self, host):
        if self._connection[0] == host:
            return self._connection[1]
        if self.url.startswith("unix://"):
            connection = _UnixConnection(self.url[len("unix://"):], self.timeout)
        else:
            parsed = urlparse(self.url)
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=self.timeout)
        self._connection = host, connection
        return connection

    def send_headers(self, connection, headers):
        if self.authorization:
            headers = list(headers) + [("Authorization", self.authorization)]
        super(_Transport, self).send_headers(connection, headers)


def proxy(url, username=None, password=None, timeout=STATUS_TIMEOUT):
    """An XML-RPC proxy to the supervisord at url (unix:///path or http://host:port), as supervisorctl connects."""
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_Transport(url, username, password, timeout))


class Supervisord(object):
    """A program's status and its restart, over XML-RPC where supervisorctl would connect, else through argv.

    run(argv) -> (rc, stdout) is the module's run_command. server: (url, username, password) to use, False for the
    command line only, None (the default) to find it from argv the first time it is needed.
    """

    def __init__(self, argv, run, server=None, timeout=STATUS_TIMEOUT):
        self.argv = list(argv)
        self.run = run
        self.server = server
        self.timeout = timeout
        self.unreachable = None  # why XML-RPC was given up, when it was
        self._proxies = {}

    def _call(self, method, *args, **kwargs):
        """The XML-RPC answer; xmlrpc.client.Fault as supervisord raised it; _Unsure when it cannot be asked (the
        command line is used from then on)."""
        if self.server is None:
            self.server = server_of(self.argv) or False
        if not self.server:
            raise _Unsure()
        timeout = None if kwargs.get("wait") else self.timeout  # supervisorctl waits for startsecs without a limit
        server = self._proxies.get(timeout)
        if server is None:
            server = self._proxies[timeout] = proxy(*self.server, timeout=timeout)
        try:
            return getattr(server.supervisor, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except _UNREACHABLE as error:
            self.server, self.unreachable = False, to_text(error)
            raise _Unsure()

    def status(self, name):
        """(known, state, pid, source): whether supervisord runs the program, its state, its PID as text ("0" when it
        does not run; None when `supervisorctl status` did not show it) and where the answer came from."""
        try:
            info = self._call("getProcessInfo", name)
            return True, info.get("statename"), str(info.get("pid") or 0), "supervisord XML-RPC"
        except (_Unsure, xmlrpc.client.Fault):
            pass  # an unknown name, a group, a pattern: supervisorctl says what it makes of it
        rc, out = self.run(self.argv + ["status", name])
        text = out.lower()
        known = rc in (0, 3) and "no such process" not in text and "error" not in text
        match = STATUS_LINE.search(out)
        state = match.group(1) if match else None
        pid = match.group(2) if match and match.group(2) else "0" if state in DOWN else None
        return known, state, pid, "supervisorctl status"

    def pid(self, name):
        """`supervisorctl pid NAME`, for the states in which `status` shows none."""
        rc, out = self.run(self.argv + ["pid", name])
        return out.strip()

    def restart(self, name):
        """(done, what supervisorctl would print): stop the program if it runs, start it and wait until supervisord
        holds it RUNNING (its startsecs), as `supervisorctl restart NAME` does."""
        try:
            try:
                self._call("stopProcess", name)
                said = ["%s: stopped" % name]
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != NOT_RUNNING:
                    raise
                said = ["%s: ERROR (not running)" % name]
            try:
                self._call("startProcess", name, wait=True)
                said.append("%s: started" % name)
                done = True
            except xmlrpc.client.Fault as fault:
                said.append("%s: ERROR (%s)" % (name, FAULT_WORDS.get(fault.faultCode, fault.faultString)))
                done = fault.faultCode == ALREADY_STARTED
            return done, "\n".join(said)
        except (_Unsure, xmlrpc.client.Fault):
            pass  # not a program supervisord knows by that name, or it cannot be asked: the command line decides
        rc, out = self.run(self.argv + ["restart", name])
        return ("started" in out or rc == 0), out.strip()
