"""remediation_gate through real ansible-playbook: blast-radius decisions, one live run per incident, and budgets
of automatic fixes that hold across concurrent runs."""

import concurrent.futures
import os
import sqlite3
import time

INVENTORY = ["web-01", "web-02", "web-03", "db-01"]


def problem(*hosts, status="OPEN", others=()):
    entities = [{"id": "HOST-%d" % n, "type": "HOST", "name": h} for n, h in enumerate(hosts)]
    entities += [{"id": "PGI-%d" % n, "type": "PROCESS_GROUP_INSTANCE", "name": o} for n, o in enumerate(others)]
    return {"id": "-1_1V2", "display_id": "P-1", "status": status, "entities": entities}


def gate(name, db, key="dt-P-1", check=None, **args):
    spec = {"incident_key": key, "path": str(db), "inventory": INVENTORY}
    spec.update(args)
    task = {"name": name, "selfheal.devops.remediation_gate": spec, "register": "r", "ignore_errors": True}
    if check is not None:
        task["check_mode"] = check
    return task


def test_decisions_follow_the_blast_radius_rules(playbook, tmp_path):
    db = tmp_path / "state" / "remediations.db"
    run = playbook([
        gate("on two hosts, one unknown", db, "dt-P-1", problem=problem("web-01", "web-02", "mystery-09")),
        gate("no host at all", db, "dt-P-2", problem=problem(others=["java"])),
        gate("no host the inventory knows", db, "dt-P-3", problem=problem("mystery-09")),
        gate("too many hosts", db, "dt-P-4", problem=problem("web-01", "web-02", "web-03"), max_hosts=2),
        gate("approve mode", db, "dt-P-5", problem=problem("db-01"), mode="approve"),
        gate("already closed", db, "dt-P-6", problem=problem("db-01", status="CLOSED")),
        gate("explicit targets", db, "dt-P-7", problem=problem(others=["checkout"]), targets=["web-03"]),
    ])
    first = run["on two hosts, one unknown"]
    assert (first["decision"], first["targets"], first["not_in_inventory"]) == ("fix", ["web-01", "web-02"], ["mystery-09"])
    assert first["changed"] and "mystery-09" in first["reason"]
    assert run["no host at all"]["decision"] == "escalate" and run["no host at all"]["targets"] == []
    assert "names no host" in run["no host at all"]["reason"]
    assert run["no host the inventory knows"]["decision"] == "escalate"
    assert "mystery-09" in run["no host the inventory knows"]["reason"]
    assert run["too many hosts"]["decision"] == "approve" and "selfheal_max_hosts" in run["too many hosts"]["reason"]
    assert run["approve mode"]["decision"] == "approve" and run["approve mode"]["targets"] == ["db-01"]
    assert run["already closed"]["decision"] == "skip" and not run["already closed"]["changed"]
    assert run["explicit targets"]["targets"] == ["web-03"]
    assert oct(os.stat(str(db)).st_mode & 0o777) == "0o600" and oct(os.stat(str(db.parent)).st_mode & 0o777) == "0o700"


def test_check_mode_decides_and_writes_nothing(playbook, tmp_path):
    db = tmp_path / "state" / "remediations.db"
    run = playbook([gate("check", db, check=True, problem=problem("web-01"))])
    assert run["check"]["decision"] == "fix" and not run["check"]["changed"]
    assert not db.parent.exists()  # not even created: a check run leaves no file behind
    # With a database: what it holds is read (web-01's budget is used up), and nothing is added or removed.
    run = playbook([gate("real", db, "dt-P-2", problem=problem("web-01"), host_limit=1),
                    gate("check", db, check=True, problem=problem("web-01"), host_limit=1)])
    assert run["real"]["decision"] == "fix" and run["check"]["decision"] == "approve"
    assert "host_limit 1" in run["check"]["reason"] and not run["check"]["changed"]
    with sqlite3.connect(str(db)) as conn:
        assert conn.execute("SELECT incident FROM leases").fetchall() == [("dt-P-2",)]
        assert conn.execute("SELECT key, incident FROM fixes").fetchall() == [("host:web-01", "dt-P-2")]


def test_one_live_run_per_incident_and_a_dead_runs_lease_is_taken_over(playbook, tmp_path):
    db = tmp_path / "remediations.db"
    holder = [gate("take", db, problem=problem("web-01")),
              {"name": "stay alive", "ansible.builtin.wait_for": {"path": str(tmp_path / "go"), "timeout": 60}}]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(playbook, holder)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if db.exists():
                with sqlite3.connect(str(db)) as conn:
                    if conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0]:
                        break
            time.sleep(0.1)
        second = playbook([gate("second", db, problem=problem("web-01")),
                           gate("closed rule", db, problem=problem("web-01", status="CLOSED"))])
        (tmp_path / "go").write_text("")
        assert first.result(timeout=120)["take"]["decision"] == "fix"
    assert second["second"]["decision"] == "skip" and "another run" in second["second"]["reason"]
    assert second["closed rule"]["owner"]["pid"] == second["second"]["owner"]["pid"]
    # The first run is gone (as after kill -9): its lease no longer blocks anyone.
    third = playbook([gate("third", db, problem=problem("web-01"))])
    assert third["third"]["decision"] == "fix"


def test_budgets_hold_across_concurrent_runs(playbook, tmp_path):
    """Six incidents on web-01 at once, three automatic fixes allowed per hour: three fix, three ask a human."""
    db = tmp_path / "remediations.db"

    def decide(number):
        return playbook([gate("gate", db, "dt-P-%d" % number, problem=problem("web-01"), host_limit=3)])["gate"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        decisions = list(pool.map(decide, range(6)))
    assert sorted(d["decision"] for d in decisions) == ["approve"] * 3 + ["fix"] * 3
    assert all("host_limit 3" in d["reason"] for d in decisions if d["decision"] == "approve")
    service = playbook([gate("one", db, "dt-P-20", problem=problem("db-01"), service="checkout", service_limit=1),
                        gate("two", db, "dt-P-21", problem=problem("web-02"), service="checkout", service_limit=1)])
    assert service["one"]["decision"] == "fix" and service["two"]["decision"] == "approve"


def test_release_frees_the_incident(playbook, tmp_path):
    db = tmp_path / "remediations.db"
    run = playbook([gate("take", db, problem=problem("web-01")), gate("release", db, state="released"),
                    gate("again", db, problem=problem("web-01"))])
    assert run["release"]["released"] and run["again"]["decision"] == "fix"


def test_bad_limits_fail_clearly(playbook, tmp_path):
    run = playbook([gate("bad", tmp_path / "r.db", problem=problem("web-01"), max_hosts=0)])
    assert run["bad"]["failed"] and "max_hosts must be at least 1" in run["bad"]["msg"]
    run = playbook([gate("unwritable", "/proc/remediations.db", problem=problem("web-01"))])
    assert run["unwritable"]["failed"] and "/proc/remediations.db" in run["unwritable"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr
