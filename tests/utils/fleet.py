"""A real fleet for tests: N hosts on their own loopback addresses, each with its own supervisord, reached over SSH.

`Fleet(workdir, size=12)` starts, for host i (1-based):

- the address 127.0.0.(10+i) (all of 127/8 is routed to the loopback interface on Linux) and the name fleet-ii;
- its own supervisord (own config, socket, logs) running a program `web`: a small HTTP server bound to that
  address and its own port, serving a page that names the host; `autorestart=false`, so a crashed program stays
  down until something (the process_restart role) restarts it;
- its own state directory (`process_restart_state_dir`) and Ansible remote temp directory;

and ONE private sshd (the Debian openssh-server binary, `make system-deps`) with its own config, host key and
authorized key, listening on every host's address on one port picked at run time; key-only root login.

`inventory()` returns a YAML-able inventory (group `fleet`) whose hosts are reached over SSH to their own address,
with each host's process_restart settings. Everything started is stopped by `stop()` (or leaving the `with` block):
the SSH control masters, sshd with every session it forked, every supervisord and its program.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.request
import xmlrpc.client

from utils.estate import BIN, ROOT, alive, descendants, remove_socket_dir, socket_dir, supervisor_rpc, wait_until

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
# sshd refuses to start without its privilege-separation directory (the Debian unit creates it at boot).
PRIVSEP_DIR = "/run/sshd"
FIRST_OCTET = 11
# Supervisor states in which the program is not running (a crash of a RUNNING program with autorestart=false
# ends in EXITED; a program that could not start ends in FATAL).
DOWN_STATES = ("STOPPED", "EXITED", "FATAL", "BACKOFF", "UNKNOWN")


class FleetError(RuntimeError):
    """The fleet could not be started (missing sshd, no free port, a process that would not come up)."""


def free_port_on(address, avoid=()):
    """A port free on `address` right now (bounded number of tries to avoid the ports in `avoid`)."""
    for dummy in range(50):
        with socket.socket() as sock:
            sock.bind((address, 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise FleetError("no free port on %s" % address)


def port_free_on_all(addresses):
    """One port that is free on every address at once (bounded tries)."""
    for dummy in range(50):
        sockets = []
        try:
            first = socket.socket()
            sockets.append(first)
            first.bind((addresses[0], 0))
            port = first.getsockname()[1]
            for address in addresses[1:]:
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise FleetError("no port free on all of %s" % ", ".join(addresses))


def ssh_banner(address, port):
    """True when an SSH server answers its banner on address:port."""
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def terminate(pids, timeout=10.0):
    """SIGTERM the given processes, SIGKILL what is still alive after `timeout`, wait until all are gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for pid in pids:
        wait_until(lambda pid=pid: not alive(pid), timeout=10, what="process %d to end" % pid)


class FleetHost(object):
    """One host of the fleet: its address, its supervisord (program `web`) and its directories."""

    def __init__(self, fleet, index, web_port):
        self.fleet = fleet
        self.index = index
        self.name = "fleet-%02d" % index
        self.address = "127.0.0.%d" % (FIRST_OCTET + index - 1)
        self.port = web_port
        self.dir = os.path.join(fleet.workdir, self.name)
        self.www = os.path.join(self.dir, "www")
        self.state_dir = os.path.join(self.dir, "state")
        self.remote_tmp = os.path.join(self.dir, "ansible-tmp")
        self.conf = os.path.join(self.dir, "supervisord.conf")
        self.socket = os.path.join(socket_dir(self.dir), "supervisor.sock")
        self.broken_flag = os.path.join(self.dir, "broken")
        self.health_url = "http://%s:%d/" % (self.address, self.port)
        self.process = None

    def write(self, python):
        os.makedirs(self.www, exist_ok=True)
        with open(os.path.join(self.www, "index.html"), "w") as handle:
            handle.write("%s\n" % self.name)
        # The program refuses to start while the host is "broken" (break_restart): a restart then fails at once.
        command = "/bin/sh -c 'test ! -e %s && exec %s -m http.server %d --bind %s --directory %s'" % (
            self.broken_flag, python, self.port, self.address, self.www)
        with open(self.conf, "w") as handle:
            handle.write(textwrap.dedent("""\
                [unix_http_server]
                file={socket}
                chmod=0700
                [supervisord]
                nodaemon=true
                logfile={d}/supervisord.log
                pidfile={d}/supervisord.pid
                childlogdir={d}
                identifier={name}
                [rpcinterface:supervisor]
                supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
                [supervisorctl]
                serverurl=unix://{socket}
                [program:web]
                command={command}
                directory={d}
                autostart=true
                autorestart=false
                startsecs=1
                startretries=0
                stopsignal=TERM
                stopwaitsecs=5
                """).format(d=self.dir, socket=self.socket, name=self.name, command=command))

    def start(self):
        with open(os.path.join(self.dir, "supervisord.out"), "ab") as out:
            self.process = subprocess.Popen([os.path.join(BIN, "supervisord"), "-c", self.conf],
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def rpc(self):
        return supervisor_rpc(self.socket)

    def info(self):
        """supervisord's view of `web` ({'statename', 'pid', ...}), or {} while supervisord does not answer."""
        if self.process is not None and self.process.poll() is not None:
            raise FleetError("supervisord of %s exited with %s; see %s" % (self.name, self.process.returncode,
                                                                           os.path.join(self.dir, "supervisord.log")))
        try:
            return self.rpc().supervisor.getProcessInfo("web")
        except (OSError, xmlrpc.client.Error):
            return {}

    def pid(self):
        info = self.info()
        return info.get("pid", 0) if info.get("statename") == "RUNNING" else 0

    def healthy(self):
        """The host's web page answers 200 with the host's own name (so a neighbour answering does not count)."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return response.status == 200 and response.read().decode().strip() == self.name
        except OSError:
            return False

    def up(self):
        return self.info().get("statename") == "RUNNING" and self.healthy()

    def role_vars(self):
        """process_restart settings for this host (run on the host itself, over SSH)."""
        return {"process_restart_name": "web",
                "process_restart_manager": "supervisor",
                "process_restart_supervisorctl": os.path.join(BIN, "supervisorctl"),
                "process_restart_supervisor_config": self.conf,
                "process_restart_health_url": self.health_url,
                "process_restart_health_body": "^%s$" % self.name,
                "process_restart_state_dir": self.state_dir}

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            program = self.info().get("pid", 0)  # also while STARTING or STOPPING
            self.process.terminate()  # supervisord stops its programs (stopwaitsecs) and exits
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            if program and alive(program):
                terminate([program])
        remove_socket_dir(self.dir)
        self.process = None


class Fleet(object):
    """`size` hosts (fleet-01 ..) on 127.0.0.11 .., each its own supervisord, behind one private sshd.

    Use as a context manager (`with Fleet(tmp_path) as fleet:`) or call start() and stop().
    """

    def __init__(self, workdir, size=12, python=None, pipelining=True, startup_timeout=60.0):
        if not 1 <= size <= 240:
            raise ValueError("a fleet has 1 to 240 hosts (127.0.0.11 .. 127.0.0.250), not %r" % (size,))
        self.workdir = os.path.join(str(workdir), "fleet")
        self.size = size
        # The managed side runs the modules with this interpreter (Python 3.9+ with the modules' imports).
        self.python = python or os.path.join(BIN, "python")
        # Pipelining sends each module over the SSH session's stdin instead of copying it with SFTP first: half the
        # round trips. `-e ansible_pipelining=false` exercises the SFTP path.
        self.pipelining = pipelining
        self.startup_timeout = startup_timeout
        self.hosts = []
        self.ssh_port = 0
        self.sshd = None
        self.startup_seconds = None
        self.inventory_path = None  # the last inventory written by write_inventory()
        self.ssh_dir = os.path.join(self.workdir, "ssh")
        self.client_key = os.path.join(self.ssh_dir, "id_ed25519")
        # Unix socket paths are limited to 108 bytes: keep the SSH control sockets under a short private directory.
        self.control_dir = None

    # --- life cycle ------------------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def start(self):
        if not os.access(SSHD, os.X_OK):
            raise FleetError("sshd not found at %s: install openssh-server (make system-deps)" % SSHD)
        began = time.monotonic()
        try:
            os.makedirs(self.workdir, exist_ok=True)
            self.control_dir = tempfile.mkdtemp(prefix="fleet-cm-")
            used = set()
            for index in range(1, self.size + 1):
                address = "127.0.0.%d" % (FIRST_OCTET + index - 1)
                port = free_port_on(address, avoid=used)
                used.add(port)
                host = FleetHost(self, index, port)
                host.write(self.python)
                self.hosts.append(host)
            for host in self.hosts:  # all supervisords start at once; sshd comes up meanwhile
                host.start()
            self._start_sshd()
            deadline = time.monotonic() + self.startup_timeout
            for host in self.hosts:
                wait_until(host.up, timeout=max(1.0, deadline - time.monotonic()), what="%s to be up" % host.name)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_sshd(self):
        os.makedirs(self.ssh_dir, mode=0o700, exist_ok=True)
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        host_key = os.path.join(self.ssh_dir, "ssh_host_ed25519_key")
        for path, comment in ((host_key, "fleet host key"), (self.client_key, "fleet client key")):
            if not os.path.exists(path):
                subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                               check=True, capture_output=True, timeout=30)
        with open(self.client_key + ".pub") as handle:
            public = handle.read().strip()
        authorized = os.path.join(self.ssh_dir, "authorized_keys")
        with open(authorized, "w") as handle:
            handle.write('from="127.0.0.0/8",restrict,pty %s\n' % public)
        os.chmod(authorized, 0o600)
        addresses = [host.address for host in self.hosts]
        config = os.path.join(self.ssh_dir, "sshd_config")
        log = os.path.join(self.ssh_dir, "sshd.log")
        for dummy in range(5):  # another process may take the port between the check and sshd's bind
            self.ssh_port = port_free_on_all(addresses)
            with open(config, "w") as handle:
                handle.write(self._sshd_config(addresses, host_key, authorized))
            check = subprocess.run([SSHD, "-t", "-f", config], capture_output=True, text=True, timeout=30, check=False)
            if check.returncode:
                raise FleetError("sshd refuses its configuration: %s" % check.stderr.strip())
            with open(log, "ab") as out:
                self.sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 20
            while self.sshd.poll() is None and time.monotonic() < deadline:
                if all(ssh_banner(address, self.ssh_port) for address in addresses):
                    return
                time.sleep(0.05)
            if self.sshd.poll() is None:
                raise FleetError("sshd did not answer on every address within 20 s; see %s" % log)
            self.sshd = None
        raise FleetError("sshd could not listen on a free port after 5 tries; see %s" % log)

    def _sshd_config(self, addresses, host_key, authorized):
        listen = "".join("ListenAddress %s:%d\n" % (address, self.ssh_port) for address in addresses)
        return listen + textwrap.dedent("""\
            HostKey {host_key}
            PidFile {dir}/sshd.pid
            AuthorizedKeysFile {authorized}
            AllowUsers root
            PermitRootLogin prohibit-password
            PubkeyAuthentication yes
            AuthenticationMethods publickey
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            HostbasedAuthentication no
            UsePAM no
            # the work directory lives under /tmp (world-writable), which StrictModes would refuse
            StrictModes no
            UseDNS no
            PrintMotd no
            PrintLastLog no
            PermitUserEnvironment no
            AcceptEnv LANG LC_*
            X11Forwarding no
            AllowTcpForwarding no
            AllowAgentForwarding no
            PermitTunnel no
            # a whole batch of hosts connects at once: never drop the unauthenticated connections of a batch
            MaxStartups 200
            MaxSessions 50
            LoginGraceTime 30
            ClientAliveInterval 15
            ClientAliveCountMax 4
            LogLevel INFO
            Subsystem sftp internal-sftp
            """).format(host_key=host_key, dir=self.ssh_dir, authorized=authorized)

    def stop(self):
        """Stop everything this fleet started: SSH control masters, sshd and its sessions, every supervisord."""
        errors = []
        masters = self.control_masters()
        for path in masters:
            self._control(path, "exit")
        try:
            terminate([pid for pid in masters.values() if alive(pid)])
        except AssertionError as error:
            errors.append("SSH control masters: %s" % error)
        if self.sshd is not None:
            try:
                sessions = descendants(self.sshd.pid)  # sshd's per-connection children call setsid: find them first
                terminate([self.sshd.pid] + sessions)
                self.sshd.wait(timeout=10)
            except (AssertionError, OSError, subprocess.TimeoutExpired) as error:
                errors.append("sshd: %s" % error)
            self.sshd = None
        for host in self.hosts:
            try:
                host.stop()
            except (AssertionError, OSError, subprocess.TimeoutExpired) as error:
                errors.append("%s: %s" % (host.name, error))
        if self.control_dir:
            shutil.rmtree(self.control_dir, ignore_errors=True)
            self.control_dir = None
        if errors:
            raise FleetError("could not stop: %s" % "; ".join(errors))

    def _control(self, path, command):
        return subprocess.run([SSH, "-o", "ControlPath=%s" % path, "-O", command, "fleet"],
                              capture_output=True, text=True, timeout=15, check=False)

    def control_masters(self):
        """{control socket: PID} of the SSH master connections Ansible keeps open to the fleet's hosts."""
        masters = {}
        if self.control_dir and os.path.isdir(self.control_dir):
            for entry in sorted(os.listdir(self.control_dir)):
                path = os.path.join(self.control_dir, entry)
                answer = self._control(path, "check").stderr  # "Master running (pid=1234)"
                if "pid=" in answer:
                    masters[path] = int(answer.split("pid=", 1)[1].split(")", 1)[0])
        return masters

    def pids(self):
        """Every process this fleet runs now (SSH control masters, sshd and its sessions, supervisords, programs)."""
        found = list(self.control_masters().values())
        if self.sshd is not None and self.sshd.poll() is None:
            found += [self.sshd.pid] + descendants(self.sshd.pid)
        for host in self.hosts:
            if host.process is not None and host.process.poll() is None:
                found += [host.process.pid] + descendants(host.process.pid)
        return found

    # --- the hosts ------------------------------------------------------------------------------------

    def host(self, name):
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError("no host %r in the fleet (%s .. %s)" % (name, self.hosts[0].name, self.hosts[-1].name))

    def __getitem__(self, name):
        return self.host(name)

    @property
    def names(self):
        return [host.name for host in self.hosts]

    def pid(self, name):
        """PID of the host's `web` program (0 when it is not running)."""
        return self.host(name).pid()

    def healthy(self, name):
        return self.host(name).healthy()

    def crash(self, name):
        """Kill the host's `web` as a crash would (SIGKILL) and wait until its supervisord has seen it die."""
        host = self.host(name)
        wait_until(host.up, timeout=15, what="%s to be running before the crash" % name)
        pid = host.pid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: host.info().get("statename") in DOWN_STATES and not alive(pid), timeout=15,
                   what="supervisord of %s to see web (PID %d) die" % (name, pid))
        return pid

    def reset(self, timeout=30.0):
        """Every host as new: repaired, `web` running and healthy, its state directory empty (between tests)."""
        for host in self.hosts:
            self.repair(host.name)
            shutil.rmtree(host.state_dir, ignore_errors=True)
            if host.info().get("statename") in ("STOPPED", "EXITED", "FATAL"):
                host.rpc().supervisor.startProcess("web", False)  # do not wait: all hosts start at once
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            wait_until(host.up, timeout=max(1.0, deadline - time.monotonic()), what="%s to be up again" % host.name)

    def break_restart(self, name):
        """Make every later start of the host's `web` exit at once (as a bad deploy would): its restart fails."""
        with open(self.host(name).broken_flag, "w") as handle:
            handle.write("broken by the test\n")

    def repair(self, name):
        """Undo break_restart: the next start of `web` works again."""
        flag = self.host(name).broken_flag
        if os.path.exists(flag):
            os.remove(flag)

    # --- Ansible ----------------------------------------------------------------------------------------

    def ssh_common_args(self):
        options = [
            "-o StrictHostKeyChecking=no",
            "-o UserKnownHostsFile=/dev/null",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o CheckHostIP=no",
            "-o LogLevel=ERROR",
            "-o BatchMode=yes",
            "-o IdentitiesOnly=yes",
            "-o PreferredAuthentications=publickey",
            # one master connection per host, reused by every task, private to this fleet
            "-o ControlMaster=auto",
            "-o ControlPersist=120s",
            "-o ControlPath=%s/%%C" % self.control_dir,
        ]
        return " ".join(options)

    def host_vars(self, host):
        variables = {
            "ansible_connection": "ssh",
            "ansible_host": host.address,
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.client_key,
            # ssh_args' default brings its own ControlPersist and compression: the fleet's options are all in
            # ansible_ssh_common_args instead
            "ansible_ssh_args": "",
            "ansible_ssh_common_args": self.ssh_common_args(),
            "ansible_python_interpreter": self.python,
            "ansible_pipelining": self.pipelining,
            "ansible_remote_tmp": host.remote_tmp,
        }
        variables.update(host.role_vars())
        return variables

    def inventory(self, names=None):
        """Inventory (YAML-able dict): group `fleet` with the hosts (all, or those named) and their variables."""
        chosen = [self.host(name) for name in names] if names is not None else self.hosts
        return {"all": {"children": {"fleet": {"hosts": {host.name: self.host_vars(host) for host in chosen}}}}}

    def write_inventory(self, path, names=None):
        import yaml

        with open(str(path), "w") as handle:
            yaml.safe_dump(self.inventory(names), handle, sort_keys=True)
        self.inventory_path = str(path)
        return self.inventory_path


def measure(fleet, workdir, batch=5):
    """Side by side in one run: process_restart over SSH on 1 crashed host, on every host (serial `batch`), and on
    every host with the local connection (same hosts, no SSH); seconds per ansible-playbook run."""
    import json

    import yaml

    play = [{"name": "heal", "hosts": "fleet", "gather_facts": False, "serial": batch,
             "tasks": [{"name": "restart", "ansible.builtin.include_role": {"name": "selfheal.devops.process_restart"}}]}]
    path = os.path.join(workdir, "measure.yml")
    with open(path, "w") as handle:
        yaml.safe_dump(play, handle)
    inventory = fleet.write_inventory(os.path.join(workdir, "inventory.yml"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_DEPRECATION_WARNINGS="False", ANSIBLE_RETRY_FILES_ENABLED="False")
    runs = [("ssh, 1 host", ["-l", fleet.names[0]]), ("ssh, %d hosts" % fleet.size, []),
            ("local connection, %d hosts" % fleet.size, ["-e", "ansible_connection=local"])]
    figures = {"hosts": fleet.size, "serial": batch, "startup_seconds": round(fleet.startup_seconds, 2)}
    for label, extra in runs:
        fleet.reset()
        chosen = fleet.names[:1] if extra[:1] == ["-l"] else fleet.names
        for name in chosen:
            fleet.crash(name)
        began = time.monotonic()
        proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, "-f", str(fleet.size), path] + extra,
                              capture_output=True, text=True, env=env, timeout=1800, check=False)
        figures[label] = round(time.monotonic() - began, 2)
        if proc.returncode or not all(fleet.healthy(name) for name in chosen):
            raise FleetError("%s: ansible-playbook failed (rc %d): %s" % (label, proc.returncode, proc.stdout[-2000:]))
    figures["load_average_1min"] = round(os.getloadavg()[0], 1)
    print(json.dumps(figures, indent=2))


def main():
    import argparse

    parser = argparse.ArgumentParser(description="Start a fleet by hand (until Enter), or --measure it.")
    parser.add_argument("--size", type=int, default=12)
    parser.add_argument("--measure", action="store_true", help="time process_restart on 1 host, on all, and without SSH")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp, Fleet(tmp, size=args.size) as fleet:
        if args.measure:
            measure(fleet, tmp)
            return
        inventory = fleet.write_inventory(os.path.join(tmp, "inventory.yml"))
        print("fleet of %d hosts up in %.2f s; inventory: %s" % (fleet.size, fleet.startup_seconds, inventory))
        input("press Enter to stop ")


if __name__ == "__main__":  # python -m utils.fleet [--size N] [--measure]
    main()
