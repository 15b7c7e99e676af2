"""restart_guard through real ansible-playbook: records before acting, trips at the limit, survives a bad file."""

import json
import os
import time


def guard(task, check=None, **args):
    item = {"name": task, "selfheal.devops.restart_guard": args, "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def test_allows_up_to_the_limit_then_reports_a_crash_loop(playbook, tmp_path):
    path = tmp_path / "state" / "deeper" / "web.json"
    args = {"path": str(path), "name": "web", "max_attempts": 2, "window": 60}
    run = playbook([guard("first", **args), guard("second", **args), guard("third", **args)])
    first, second, third = run["first"], run["second"], run["third"]
    assert first["allowed"] and first["changed"] and first["recent"] == [], first
    assert second["allowed"] and len(second["recent"]) == 1, second
    assert third["crash_loop"] and not third["allowed"] and not third["changed"] and third["recorded_at"] is None
    record = json.loads(path.read_text())
    assert record["name"] == "web" and len(record["attempts"]) == 2
    assert oct(os.stat(str(path)).st_mode & 0o777) == "0o640"
    assert [p.name for p in path.parent.iterdir()] == ["web.json"]  # no temporary file left


def test_old_attempts_fall_out_of_the_window_and_are_dropped(playbook, tmp_path):
    path = tmp_path / "web.json"
    now = time.time()
    path.write_text(json.dumps({"name": "web", "attempts": [now - 3600, now - 1800, now - 10]}))
    run = playbook([guard("guard", path=str(path), name="web", max_attempts=2, window=600)])
    assert run["guard"]["allowed"] and len(run["guard"]["recent"]) == 1
    assert len(json.loads(path.read_text())["attempts"]) == 2


def test_check_mode_decides_and_writes_nothing(playbook, tmp_path):
    path = tmp_path / "web.json"
    run = playbook([guard("guard", check=True, path=str(path), name="web")])
    assert run["guard"]["allowed"] and run["guard"]["changed"] and not path.exists()


def test_a_corrupt_record_is_reported_and_replaced(playbook, tmp_path):
    path = tmp_path / "web.json"
    path.write_text("{half a record")
    run = playbook([guard("guard", path=str(path), name="web")])
    assert run["guard"]["allowed"] and "not JSON" in run["guard"]["warning"]
    assert len(json.loads(path.read_text())["attempts"]) == 1


def test_an_unwritable_place_fails_clearly(playbook, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = playbook([guard("guard", path=str(blocker / "web.json"), name="web"),
                    guard("bad limits", path=str(tmp_path / "x.json"), name="web", max_attempts=0)])
    assert run["guard"]["failed"] and "cannot record the restart" in run["guard"]["msg"]
    assert run["bad limits"]["failed"] and "max_attempts" in run["bad limits"]["msg"]


def test_two_remediations_of_one_host_at_once_lose_no_attempt(playbook, tmp_path):
    """Eight ansible-playbook runs guard the same program at the same moment: every attempt is recorded."""
    import concurrent.futures

    path = tmp_path / "web.json"
    args = {"path": str(path), "name": "web", "max_attempts": 100, "window": 600}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        runs = list(pool.map(lambda dummy: playbook([guard("guard", **args)]), range(8)))
    assert all(run["guard"]["allowed"] and run["guard"]["changed"] for run in runs)
    assert len(json.loads(path.read_text())["attempts"]) == 8
