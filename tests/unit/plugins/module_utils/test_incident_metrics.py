"""The incident figures computed exactly on a hand-built history (plugins/module_utils/_incident_metrics.py).

Five incidents, times in seconds from T (a Tuesday, 2023-11-14 22:13:20 UTC):

| inc | mode      | scenario      | host   | onset | detected | paged | ack (by)              | fix         | resolved |
|-----|-----------|---------------|--------|-------|----------|-------|-----------------------|-------------|----------|
| A   | auto      | process_crash | web-01 | -60   | 0        | 10    | 100 (oncall.primary)  | 20-30 ok    | 35       |
| B   | auto      | process_crash | web-01 | -120  | 1 d      | +5    | +25 (oncall.primary)  | +30-+50 ok  | +55      |
| C   | approve   | full_disk     | db-01  | -30   | 2 d      | +8    | +68 (dba.one, approval)| +70-+100 ok | +110     |
| D   | escalated | process_crash | web-01 | -90   | 3 d      | +6    | +306 (oncall.secondary)| +10-+20 failed | +3600 |
| E   | auto      | process_crash | web-01 | -60   | 8 d      | +4    | +14 (oncall.primary)  | +10-+20 ok  | +22      |
"""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _incident_metrics as metrics

T = 1700000000.0
DAY = 86400.0


def rec(key, action, step, system, result, start, end, detail=""):
    return {"time": metrics.iso(end), "incident": key, "action": action, "step": step, "system": system, "result": result,
            "duration": round(end - start, 3), "detail": detail}


def build(key, base, onset, paged, fix, resolved, healthy_ok=True, approval=None, escalate_at=None, deliveries=(),
          host="web-01", step="restart process", title="Process unavailable: web"):
    records = [rec(key, "open", "remediation started", "dynatrace", "changed", base + 1, base + 2),
               rec(key, "open", "page on-call", "xmatters", "changed", base + 2, base + paged),
               rec(key, "open", "open ticket", "jira", "changed", base + paged, base + paged + 0.5)]
    if approval:
        records.append(rec(key, "approve", "approval", "xmatters", "ok", base + paged + 1, base + approval[0],
                           "Approve by %s" % approval[1]))
    records.append(rec(key, "record", step, host, "changed" if healthy_ok else "failed", base + fix[0], base + fix[1]))
    if escalate_at is not None:
        records.append(rec(key, "escalate", "escalated", "dynatrace", "changed", base + escalate_at, base + escalate_at + 0.2))
    records.append(rec(key, "resolve", "resolved", "dynatrace", "changed" if escalate_at is None else "ok",
                       base + resolved - 0.3, base + resolved))
    records.append(rec(key, "resolve", "resolve ticket", "jira", "changed", base + resolved + 1, base + resolved + 2))
    incident = metrics.from_timeline({"incident": key, "problem": "P-" + key, "records": records})
    metrics.apply_problem(incident, {"id": "id-" + key, "display_id": "P-" + key, "title": title,
                                     "entities": [{"id": "HOST-" + host, "type": "HOST", "name": host}],
                                     "root_cause": None, "tags": {"service": "web"}, "management_zones": ["prod"],
                                     "start_time": int(base * 1000), "evidence": [{"start_time": int((base + onset) * 1000)}]})
    if deliveries:
        metrics.apply_deliveries(incident, [dict(d, delivered=base + paged) for d in deliveries])
    return incident


@pytest.fixture
def history():
    a = build("A", T, -60, 10, (20, 30), 35, deliveries=[
        {"recipient": "oncall.primary", "response": "Acknowledge", "responded_at": T + 100},
        {"recipient": "oncall.secondary"}])
    b = build("B", T + DAY, -120, 5, (30, 50), 55, deliveries=[
        {"recipient": "oncall.primary", "response": "Acknowledge", "responded_at": T + DAY + 25},
        {"recipient": "oncall.secondary"}])
    c = build("C", T + 2 * DAY, -30, 8, (70, 100), 110, approval=(68, "dba.one"), host="db-01", step="clean temporary files",
              title="Low disk space on /var")
    d = build("D", T + 3 * DAY, -90, 6, (10, 20), 3600, healthy_ok=False, escalate_at=21, deliveries=[
        {"recipient": "oncall.primary"},
        {"recipient": "oncall.secondary", "response": "Acknowledge", "responded_at": T + 3 * DAY + 306}])
    e = build("E", T + 8 * DAY, -60, 4, (10, 20), 22, deliveries=[
        {"recipient": "oncall.primary", "response": "Acknowledge", "responded_at": T + 8 * DAY + 14},
        {"recipient": "oncall.secondary"}])
    return [a, b, c, d, e]


def test_each_incident_has_its_stage_times_and_figures(history):
    a, b, c, d, e = history
    assert metrics.figures(a) == {"time_to_detect": 60.0, "time_to_acknowledge": 100.0, "time_to_heal": 30.0, "time_to_resolve": 35.0}
    assert metrics.figures(c) == {"time_to_detect": 30.0, "time_to_acknowledge": 68.0, "time_to_heal": 100.0, "time_to_resolve": 110.0}
    assert metrics.figures(d) == {"time_to_detect": 90.0, "time_to_acknowledge": 306.0, "time_to_heal": None, "time_to_resolve": 3600.0}
    assert [i["mode"] for i in history] == ["auto", "auto", "approve", "escalated", "auto"]
    assert [i["scenario"] for i in history] == ["process_crash", "process_crash", "full_disk", "process_crash", "process_crash"]
    assert (a["acknowledged_by"], c["acknowledged_by"], d["acknowledged_by"]) == ("oncall.primary", "dba.one", "oncall.secondary")
    assert a["detected_from"] == "dynatrace" and a["service"] == "web" and a["management_zones"] == ["prod"]
    assert [metrics.fixed_before_ack(i) for i in history] == [True, False, False, False, False]
    assert metrics.fixed_by(a) == "selfheal.devops (restart process on web-01)"
    assert metrics.fixed_by(c) == "selfheal.devops (clean temporary files on db-01), approved by dba.one"
    assert metrics.fixed_by(d) == "oncall.secondary"


def test_report_medians_p90s_rates_and_savings_are_exact(history):
    report = metrics.build_report(history, T - 1, T + 30 * DAY)
    times = report["times"]["all"]
    assert times["time_to_detect"] == {"count": 5, "median": 60.0, "p90": 108.0, "mean": 72.0, "min": 30.0, "max": 120.0}
    assert times["time_to_acknowledge"] == {"count": 5, "median": 68.0, "p90": 223.6, "mean": 102.6, "min": 14.0, "max": 306.0}
    assert times["time_to_heal"] == {"count": 4, "median": 40.0, "p90": 85.0, "mean": 50.0, "min": 20.0, "max": 100.0}
    assert times["time_to_resolve"] == {"count": 5, "median": 55.0, "p90": 2204.0, "mean": 764.4, "min": 22.0, "max": 3600.0}
    assert report["times"]["auto"]["time_to_acknowledge"]["median"] == 25.0  # A 100, B 25, E 14
    assert report["times"]["escalated"]["time_to_resolve"]["median"] == 3600.0
    totals = report["totals"]
    assert (totals["incidents"], totals["auto"], totals["approve"], totals["escalated"]) == (5, 3, 1, 1)
    assert (totals["fix_success_rate"], totals["escalation_rate"]) == (0.8, 0.2)
    # A healed 30 s after detection, before anyone answered; a person took 3600 s on the escalated crash (D).
    assert report["automation"] == {"fixed_before_ack": 1, "share": 0.2, "saved_seconds": 3570.0, "counted": 1,
                                    "baselines": {"process_crash": {"seconds": 3600.0, "from": "escalated incidents of this scenario"}}}
    assert report["counts"]["host"] == [{"name": "web-01", "count": 4}, {"name": "db-01", "count": 1}]
    assert report["counts"]["scenario"][0] == {"name": "process_crash", "count": 4}
    assert [d["day"] for d in report["per_day"]] == ["2023-11-14", "2023-11-15", "2023-11-16", "2023-11-17", "2023-11-22"]


def test_per_responder_times_load_and_record(history):
    people = dict((r["name"], r) for r in metrics.build_report(history)["responders"])
    primary = people["oncall.primary"]
    assert (primary["pages"], primary["responses"], primary["acknowledged_first"]) == (4, 3, 3)
    assert primary["response_time"]["median"] == 20.0 and primary["response_time"]["p90"] == 76.0  # 90, 20, 10
    assert primary["weekly"] == [{"week": "2023-W46", "mean": 55.0, "responses": 2}, {"week": "2023-W47", "mean": 10.0, "responses": 1}]
    assert primary["broke_record"] is True and primary["record_week"] == "2023-W47"
    secondary = people["oncall.secondary"]
    assert (secondary["pages"], secondary["responses"], secondary["response_time"]["median"]) == (4, 1, 300.0)
    assert secondary["broke_record"] is False
    assert people["dba.one"]["response_time"]["median"] == 60.0  # the approval, from the timeline: paged +8, answered +68


def test_recurrences_and_the_recurrence_text(history):
    a, b, c, d, e = history
    groups = metrics.recurrences(history)
    assert len(groups) == 1
    assert groups[0]["signature"] == "entity|process_crash|web-01" and groups[0]["count"] == 4
    assert groups[0]["incidents"] == ["A", "B", "D", "E"]
    assert groups[0]["last_fixed_by"] == "selfheal.devops (restart process on web-01)" and groups[0]["last_time_to_heal"] == 20.0
    assert [i["key"] for i in metrics.similar(e, history)] == ["A", "B", "D"]
    assert metrics.recurrence_text(3, 30, e) == \
        "seen 3 times in the last 30 days, last fixed by selfheal.devops (restart process on web-01) in 20 s"
    assert metrics.recurrence_text(0, 30, None) == "first occurrence in the last 30 days"
    assert metrics.signature_label("entity|process_crash|web-01").startswith("selfheal-sig-")


def test_signatures_prefer_the_root_cause_and_ignore_what_changes():
    incident = metrics.new_incident("k")
    incident.update(title="Disk 93% full on /var (volume 0x1f2e3d4c5b6a)", scenario="full_disk",
                    root_cause={"id": "HOST-1", "type": "HOST", "name": "db-01"},
                    entities=[{"id": "HOST-1", "type": "HOST", "name": "DB-01"}, {"id": "PGI-9", "type": "PROCESS_GROUP_INSTANCE", "name": "pg"}])
    assert metrics.signatures(incident) == ["cause|host-1|disk # full on var volume #", "entity|full_disk|db-01"]
    assert metrics.title_signature('Process "web" unavailable, 3 restarts') == "process # unavailable # restarts"


def test_period_selects_by_detection_time(history):
    report = metrics.build_report(history, T + DAY, T + 3 * DAY)
    assert [row["key"] for row in report["incidents"]] == ["B", "C"]


@pytest.mark.parametrize("value, expected", [
    ("2026-11-30T05:00:01.250Z", 1796014801.25), ("2026-11-30T05:00:01.250+0000", 1796014801.25),
    ("2026-11-30T06:00:01+01:00", 1796014801.0), ("2026-11-30", 1795996800.0), (1796014801250, 1796014801.25),
    (1796014801.25, 1796014801.25), (-1, None), ("", None), ("yesterday", None), (None, None), (True, None)])
def test_parse_time(value, expected):
    assert metrics.parse_time(value) == expected


def test_summaries_of_nothing_and_bad_timelines():
    assert metrics.summarize([]) == {"count": 0, "median": None, "p90": None, "mean": None, "min": None, "max": None}
    assert metrics.percentile([5], 0.9) == 5
    for document in (None, {"records": "x"}, {"records": []}, []):
        with pytest.raises(ValueError):
            metrics.from_timeline(document)
    assert metrics.duration_text(3725) == "1 h 2 min" and metrics.duration_text(42) == "42 s" and metrics.duration_text(None) == "n/a"
