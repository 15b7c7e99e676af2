"""Which inventory hosts a problem's host names stand for: exact names, aliases, case; never a guess."""

from ansible_collections.selfheal.devops.plugins.module_utils import _remediation as rm

INVENTORY = {"web-01", "web-02", "db-01", "Mixed-Case", "mixed-case"}


def problem(*hosts):
    return {"status": "OPEN", "entities": [{"type": "HOST", "name": h} for h in hosts]}


def test_exact_names_alias_and_case_resolve_and_nothing_else_does():
    resolved, unresolved = rm.resolve_hosts(
        ["web-01", "WEB-02", "db-01.prod.example.com", "web-01.staging.example.com", "MIXED-CASE", "ghost"],
        INVENTORY, {"DB-01.Prod.Example.Com": "db-01"})
    assert resolved == {"web-01": "web-01", "WEB-02": "web-02", "db-01.prod.example.com": "db-01"}
    # no short name for a long one (another domain's web-01 is another host), no pick between two case variants
    assert unresolved == ["web-01.staging.example.com", "MIXED-CASE", "ghost"]


def test_an_alias_to_a_host_outside_the_inventory_resolves_nothing():
    assert rm.resolve_hosts(["web-09.prod"], INVENTORY, {"web-09.prod": "web-09"}) == ({}, ["web-09.prod"])


def test_the_decision_fixes_each_inventory_host_once_and_says_which_name_was_taken_for_which():
    decision, targets, reason, unresolved, renamed = rm.decide(
        problem("web-01.prod.example.com", "web-01", "WEB-02", "ghost"), INVENTORY,
        aliases={"web-01.prod.example.com": "web-01"})
    assert decision == rm.FIX and targets == ["web-01", "web-02"] and unresolved == ["ghost"]
    assert renamed == {"web-01.prod.example.com": "web-01", "WEB-02": "web-02"}
    assert reason == ("automatic fix on web-01, web-02 (not in the inventory, left alone: ghost) "
                      "(web-01.prod.example.com is web-01, WEB-02 is web-02)")


def test_names_nothing_resolves_escalate_and_point_at_the_aliases():
    decision, targets, reason, unresolved, renamed = rm.decide(problem("web-01.prod.example.com"), INVENTORY)
    assert decision == rm.ESCALATE and targets == [] and renamed == {} and unresolved == ["web-01.prod.example.com"]
    assert "no host the problem names is in the inventory (web-01.prod.example.com; other names: selfheal_host_aliases)" in reason


def test_aliases_count_against_the_host_limit_as_the_hosts_they_name():
    decision, targets, reason, unresolved, renamed = rm.decide(
        problem("a.example.com", "b.example.com"), {"a", "b"}, max_hosts=1, aliases={"a.example.com": "a", "b.example.com": "b"})
    assert decision == rm.APPROVE and targets == ["a", "b"] and "2 hosts exceed the automatic limit of 1" in reason
