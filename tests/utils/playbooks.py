"""Real ansible-playbook runs for tests and benchmarks: a list of tasks, or one of the collection's playbooks."""

import json
import os
import subprocess
import sys
import tempfile

import yaml

from sandbox import credentials
from utils.estate import BIN, ROOT

COLLECTIONS = os.path.join(ROOT, "build", "collections")


class PlaybookRun(object):
    """Outcome of one ansible-playbook run: rc, raw output and per-task results by task name."""

    def __init__(self, rc, stdout, stderr, results):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.results = results

    def __getitem__(self, task_name):
        return self.results[task_name]

    def assert_no_secret(self):
        text = self.stdout + self.stderr
        leaked = [s for s in credentials.SECRETS if s in text]
        assert not leaked, "secret leaked into ansible output"


def run_playbook(tasks, extra_vars=None, env=None, check=False, diff=False, hosts="localhost",
                 inventory="localhost,", timeout=600, extra_args=(), connection="local"):
    """Run `tasks` (a list of task dicts) with real ansible-playbook and the JSON stdout callback.

    Every task must have a unique `name`; the result of each is returned under that name (the last one
    if it ran several times; a dict by host when several hosts ran it). A failing task ends the play
    unless it has ignore_errors: look at its `failed` key.
    """
    play = [{"name": "test", "hosts": hosts, "gather_facts": False, "connection": connection, "tasks": tasks}]
    with tempfile.TemporaryDirectory(prefix="selfheal-pb-") as tmp:
        path = os.path.join(tmp, "playbook.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(play, handle, sort_keys=False)
        command = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, path]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        command += list(extra_args)
        results_file = os.path.join(tmp, "results.json")
        run_env = dict(os.environ)
        run_env.update({
            "ANSIBLE_CALLBACKS_ENABLED": "record_results",
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "utils", "callback_plugins"),
            "SELFHEAL_RESULTS_FILE": results_file,
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        })
        run_env.update(env or {})
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout, check=False)
        by_task = {}
        if os.path.exists(results_file):
            with open(results_file) as handle:
                by_task = json.load(handle)
    # One host (the usual case): results[name] is that host's result; else a dict by host.
    results = {name: (hosts_[next(iter(hosts_))] if len(hosts_) == 1 else hosts_) for name, hosts_ in by_task.items()}
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)


def run_collection_playbook(name, inventory, extra_vars=None, env=None, timeout=600, extra_args=()):
    """Run one of the collection's playbooks (selfheal.devops.<name>) as users do; inventory is a dict."""
    with tempfile.TemporaryDirectory(prefix="selfheal-pb-") as tmp:
        path = os.path.join(tmp, "inventory.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(inventory, handle)
        command = [os.path.join(BIN, "ansible-playbook"), "-i", path, "selfheal.devops." + name]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        command += list(extra_args)
        run_env = dict(os.environ)
        run_env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
                        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                        "PATH": BIN + os.pathsep + os.environ.get("PATH", "")})
        run_env.update(env or {})
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout, check=False)
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, {})
