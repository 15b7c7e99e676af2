"""incident_timeline through real ansible-playbook: reads, appends atomically, keeps a bad file aside."""

import json
import os
import subprocess
import sys


def timeline(task, check=None, **args):
    item = {"name": task, "selfheal.devops.incident_timeline": args, "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def record(step):
    return {"time": "2026-11-30T05:00:00.000Z", "action": "open", "step": step, "system": "test", "result": "ok",
            "duration": 0.1, "detail": ""}


def test_read_append_and_check_mode(playbook, tmp_path):
    path = tmp_path / "incidents" / "inc-1.json"
    args = {"path": str(path), "incident": "inc-1", "problem": "P-1"}
    run = playbook([timeline("read missing", **args),
                    timeline("first", append=[record("a"), record("b")], **args),
                    timeline("check", check=True, append=[record("c")], **args),
                    timeline("second", append=[record("d")], **args),
                    timeline("create existing", create=True, **args),
                    timeline("read", **args)])
    assert run["read missing"]["records"] == [] and not run["read missing"]["exists"] and not run["read missing"]["changed"]
    assert run["first"]["changed"] and run["first"]["appended"] == 2
    assert [r["step"] for r in run["check"]["records"]] == ["a", "b", "c"]
    assert [r["step"] for r in run["second"]["records"]] == ["a", "b", "d"]  # check mode wrote nothing
    assert run["read"]["exists"] and not run["read"]["changed"] and not run["create existing"]["changed"]
    data = json.loads(path.read_text())
    assert data["incident"] == "inc-1" and data["problem"] == "P-1" and [r["step"] for r in data["records"]] == ["a", "b", "d"]
    assert oct(os.stat(str(path)).st_mode & 0o777) == "0o640" and oct(os.stat(str(path.parent)).st_mode & 0o777) == "0o750"
    assert sorted(p.name for p in path.parent.iterdir()) == ["inc-1.json"]


def test_a_bad_file_is_kept_aside_and_a_new_timeline_starts(playbook, tmp_path):
    path = tmp_path / "inc-2.json"
    path.write_text("{not json")
    check = playbook([timeline("check", check=True, path=str(path), incident="inc-2", append=[record("a")])])
    assert "would be kept aside" in check["check"]["warning"] and path.read_text() == "{not json"
    run = playbook([timeline("append", path=str(path), incident="inc-2", append=[record("a")])])
    assert "kept as" in run["append"]["warning"] and not run["append"]["exists"]
    [kept] = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert kept.read_text() == "{not json"
    assert [r["step"] for r in json.loads(path.read_text())["records"]] == ["a"]


def test_concurrent_appends_lose_nothing(tmp_path):
    """Four processes append 25 records each to one timeline through the module's own code, at the same time."""
    path = tmp_path / "inc-3.json"
    code = ("import sys; from ansible_collections.selfheal.devops.plugins.modules import incident_timeline as t\n"
            "for n in range(25):\n"
            "    t.run({'path': sys.argv[1], 'incident': 'inc-3', 'problem': '', "
            "'append': [{'step': sys.argv[2] + str(n)}]}, False)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), "w%d-" % w], env=env) for w in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    steps = [r["step"] for r in json.loads(path.read_text())["records"]]
    assert sorted(steps) == sorted("w%d-%d" % (w, n) for w in range(4) for n in range(25))


def test_an_unwritable_place_fails_clearly(playbook, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = playbook([timeline("append", path=str(blocker / "inc.json"), incident="inc", append=[record("a")])])
    assert run["append"]["failed"] and "cannot use the timeline" in run["append"]["msg"]
