"""Supervisord: where supervisorctl would connect, and the XML-RPC answers against a scripted supervisord."""

import threading
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _supervisor as sv


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture
def conf(tmp_path):
    return write(tmp_path / "supervisord.conf", "[supervisorctl]\nserverurl = unix://%(here)s/run/../sv.sock ; comment\n"
                                                "username = %(ENV_SV_USER)s\npassword = secret\n")


def test_the_configuration_given_with_c_is_read_as_supervisorctl_reads_it(conf, tmp_path):
    server = sv.server_of(["/usr/bin/supervisorctl", "-c", conf], environ={"SV_USER": "ops"})
    assert server == ("unix://%s/sv.sock" % tmp_path, "ops", "secret")
    for argv in (["supervisorctl", "-c" + conf], ["supervisorctl", "--configuration=" + conf],
                 ["supervisorctl", "--configuration", conf]):
        assert sv.server_of(argv, environ={"SV_USER": "ops"}) == server, argv


def test_options_on_the_command_line_win_over_the_configuration(conf):
    argv = ["supervisorctl", "-c", conf, "-s", "http://127.0.0.1:9001", "-u", "me", "--password=pw"]
    assert sv.server_of(argv, environ={"SV_USER": "ops"}) == ("http://127.0.0.1:9001", "me", "pw")


@pytest.mark.parametrize("argv", [
    ["sudo", "supervisorctl"],  # another program (and another user) in front: only the command line knows
    ["supervisorctl", "-c"],  # an option without its value
    ["supervisorctl", "-i"],  # an option this does not know
    ["supervisorctl", "--config=x"],  # getopt would take the abbreviation; this does not guess
    [],
])
def test_a_command_line_that_cannot_be_read_for_sure_is_left_to_run(argv):
    assert sv.server_of(argv, environ={}) is None


@pytest.mark.parametrize("text", [
    "[supervisord]\nlogfile = x\n",  # no [supervisorctl]: supervisorctl refuses the file, let it say so
    "[supervisorctl]\nusername = %(ENV_NOPE)s\n",  # an expansion supervisor could not make either
    "[supervisorctl]\nserverurl = https://example.com\n",  # not an address supervisorctl can use
    "not an ini file",
])
def test_a_configuration_that_cannot_be_read_for_sure_is_left_to_the_command_line(tmp_path, text):
    assert sv.server_of(["supervisorctl", "-c", write(tmp_path / "c.conf", text)], environ={}) is None
    assert sv.server_of(["supervisorctl", "-c", str(tmp_path / "missing.conf")], environ={}) is None


def test_without_c_the_search_path_starts_beside_the_program(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc" / "supervisord.conf", "[supervisorctl]\nserverurl = unix:///run/sv.sock\n")
    program = str(tmp_path / "bin" / "supervisorctl")
    assert sv.server_of([program], environ={}) == ("unix:///run/sv.sock", None, None)
    assert sv.server_of(["supervisorctl"], environ={}, which=lambda name: program) == ("unix:///run/sv.sock", None, None)
    assert sv.server_of(["supervisorctl"], environ={}, which=lambda name: None) is None  # not installed


def test_without_any_configuration_supervisorctl_default_address_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(sv.os.path, "exists", lambda path: False)
    assert sv.server_of([str(tmp_path / "supervisorctl")], environ={}) == (sv.DEFAULT_URL, None, None)


class ScriptedSupervisord(object):
    """supervisord's XML-RPC methods the modules call, on 127.0.0.1, with what each call asked and its header."""

    def __init__(self, programs):
        self.programs = programs  # name -> {"statename", "pid"}, or an int: the fault startProcess raises
        self.calls = []
        self.server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
        outer = self

        def record(name):
            def decorate(function):
                def call(*args):
                    outer.calls.append((name,) + args)
                    return function(*args)
                self.server.register_function(call, "supervisor." + name)
            return decorate

        @record("getProcessInfo")
        def info(name):
            if name not in self.programs:
                raise xmlrpc.client.Fault(sv.BAD_NAME, "BAD_NAME: " + name)
            program = self.programs[name]
            return {"name": name, "statename": program["statename"], "pid": program["pid"]}

        @record("stopProcess")
        def stop(name):
            if self.programs[name]["statename"] != "RUNNING":
                raise xmlrpc.client.Fault(sv.NOT_RUNNING, "NOT_RUNNING: " + name)
            self.programs[name].update(statename="STOPPED", pid=0)
            return True

        @record("startProcess")
        def start(name):
            fault = self.programs[name].get("fault")
            if fault:
                raise xmlrpc.client.Fault(fault, "fault")
            self.programs[name].update(statename="RUNNING", pid=5151)
            return True

        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class CommandLine(object):
    def __init__(self, answer=(0, "")):
        self.calls = []
        self.answer = answer

    def __call__(self, argv):
        self.calls.append(argv)
        return self.answer


@pytest.fixture
def supervisord():
    scripted = ScriptedSupervisord({"web": {"statename": "EXITED", "pid": 0}})
    yield scripted
    scripted.close()


def test_status_and_restart_are_asked_over_xml_rpc_without_running_supervisorctl(supervisord):
    run = CommandLine()
    client = sv.Supervisord(["supervisorctl"], run, server=(supervisord.url, None, None))
    assert client.status("web") == (True, "EXITED", "0", "supervisord XML-RPC")
    assert client.restart("web") == (True, "web: ERROR (not running)\nweb: started")
    assert client.status("web") == (True, "RUNNING", "5151", "supervisord XML-RPC")
    assert client.restart("web") == (True, "web: stopped\nweb: started")
    assert run.calls == []
    assert [call[0] for call in supervisord.calls] == ["getProcessInfo", "stopProcess", "startProcess", "getProcessInfo",
                                                       "stopProcess", "startProcess"]


@pytest.mark.parametrize("fault, words, done", [(50, "spawn error", False), (40, "abnormal termination", False),
                                                (60, "already started", True)])
def test_a_start_that_fails_is_said_as_supervisorctl_says_it(supervisord, fault, words, done):
    supervisord.programs["web"]["fault"] = fault
    client = sv.Supervisord(["supervisorctl"], CommandLine(), server=(supervisord.url, None, None))
    assert client.restart("web") == (done, "web: ERROR (not running)\nweb: ERROR (%s)" % words)


def test_a_name_supervisord_does_not_know_is_left_to_supervisorctl(supervisord):
    """A group or a pattern is not a program name for getProcessInfo: supervisorctl says what it makes of it."""
    run = CommandLine((4, "grp: ERROR (no such process)\n"))
    client = sv.Supervisord(["supervisorctl", "-c", "x"], run, server=(supervisord.url, None, None))
    assert client.status("grp") == (False, "ERROR", None, "supervisorctl status")
    assert client.restart("grp") == (False, "grp: ERROR (no such process)")
    assert run.calls == [["supervisorctl", "-c", "x", "status", "grp"], ["supervisorctl", "-c", "x", "restart", "grp"]]
    assert client.server  # still asked over XML-RPC next time


def test_a_supervisord_that_does_not_answer_is_asked_once_then_the_command_line_is_used(tmp_path):
    run = CommandLine((0, "web                              RUNNING   pid 4242, uptime 0:01:00\n"))
    client = sv.Supervisord(["supervisorctl"], run, server=("unix://%s" % (tmp_path / "no.sock"), None, None))
    assert client.status("web") == (True, "RUNNING", "4242", "supervisorctl status")
    assert client.status("web")[3] == "supervisorctl status"
    assert client.server is False and "No such file" in client.unreachable
    assert len(run.calls) == 2


def test_basic_authentication_goes_with_every_call():
    seen = []

    class Recording(SimpleXMLRPCRequestHandler):
        def decode_request_content(self, data):
            seen.append(self.headers.get("Authorization"))
            return SimpleXMLRPCRequestHandler.decode_request_content(self, data)

    server = SimpleXMLRPCServer(("127.0.0.1", 0), requestHandler=Recording, logRequests=False)
    server.register_function(lambda name: {"statename": "RUNNING", "pid": 7}, "supervisor.getProcessInfo")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = sv.Supervisord(["supervisorctl"], CommandLine(),
                                server=("http://127.0.0.1:%d" % server.server_address[1], "ops", "p:w"))
        assert client.status("web")[:3] == (True, "RUNNING", "7")
        assert seen == ["Basic b3BzOnA6dw=="]  # base64 of ops:p:w
    finally:
        server.shutdown()
        server.server_close()


def test_the_address_is_found_from_the_command_line_on_first_use(conf, monkeypatch):
    monkeypatch.setenv("SV_USER", "ops")
    run = CommandLine((4, "web: ERROR (no such process)"))
    client = sv.Supervisord(["supervisorctl", "-c", conf], run)
    assert client.server is None and run.calls == []
    assert client.status("web")[0] is False  # the configured socket does not exist: asked once, then the command line
    assert client.server is False and client.unreachable
    assert run.calls == [["supervisorctl", "-c", conf, "status", "web"]]


@pytest.mark.parametrize("body", [b"<html>hello</html>", b"not XML at all <"])
def test_something_else_answering_at_the_address_is_given_up_for_the_command_line(body):
    """An HTTP server that is not supervisord (a 200 that is not XML-RPC): asked once, then supervisorctl."""
    import http.server

    class NotSupervisord(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotSupervisord)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = CommandLine((0, "web                              RUNNING   pid 4242, uptime 0:01:00\n"))
        client = sv.Supervisord(["supervisorctl"], run, server=("http://127.0.0.1:%d" % server.server_address[1], None, None))
        assert client.status("web") == (True, "RUNNING", "4242", "supervisorctl status")
        assert client.server is False and len(run.calls) == 1
    finally:
        server.shutdown()
        server.server_close()
