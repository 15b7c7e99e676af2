"""Pure logic of the blue-green modules: HAProxy server-state parsing and command planning, nginx colour
recognition and the validation copy of the main configuration."""

import pytest

from ansible_collections.selfheal.devops.plugins.modules import bluegreen_nginx, haproxy_runtime

STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change
3 app 1 blue 127.0.0.1 2 0 1 1 12
3 app 2 green 127.0.0.1 0 5 1 1 12
"""


def test_show_servers_state_is_parsed_by_its_header():
    servers = haproxy_runtime.parse_servers_state(STATE, "app")
    assert servers["blue"]["admin_state"] == "ready" and servers["blue"]["op_state"] == "up"
    assert servers["green"]["admin_state"] == "maint" and servers["green"]["op_state"] == "down"


@pytest.mark.parametrize("bits,state", [(0, "ready"), (1, "maint"), (5, "maint"), (4, "ready"), (8, "drain"), (0x20, "maint")])
def test_admin_state_bits(bits, state):
    # 4 alone: disabled in the configuration, then set ready at run time; HAProxy serves it (show stat: UP).
    assert haproxy_runtime.admin_state(bits) == state


def test_plan_readies_first_and_only_what_changes():
    servers = haproxy_runtime.parse_servers_state(STATE, "app")
    assert haproxy_runtime.plan("app", servers, {"green": "ready", "blue": "maint"}) == (
        ["set server app/green state ready"], ["set server app/blue state maint"])
    assert haproxy_runtime.plan("app", servers, {"blue": "ready"}) == ([], [])


def test_plan_names_unknown_servers():
    with pytest.raises(haproxy_runtime.RuntimeApiError, match="no server purple"):
        haproxy_runtime.plan("app", haproxy_runtime.parse_servers_state(STATE, "app"), {"purple": "ready"})


def test_an_unknown_backend_answer_is_an_error():
    with pytest.raises(haproxy_runtime.RuntimeApiError, match="Can't find backend"):
        haproxy_runtime.parse_servers_state("Can't find backend.\n", "nope")


@pytest.mark.parametrize("text,colour", [
    ("# bluegreen_switch_active: green\nmap $host $u { default green; }\n", "green"),
    ("map $host $u { default app_blue; }\n", "blue"),
    ("# default green;\nmap $host $u {\n    default app_green;\n}\n", "green"),
    ("map $host $u { default other; }\n", None),
])
def test_current_colour_from_marker_or_map_default(text, colour):
    assert bluegreen_nginx.current_colour(text, {"blue": "app_blue", "green": "app_green"}) == colour


def test_the_validation_copy_includes_the_candidate_instead_of_the_live_file():
    conf = "http {\n    include /etc/nginx/bluegreen/active.conf;\n    server { listen 80; }\n}\n"
    copy = bluegreen_nginx.validation_config(conf, "/etc/nginx/bluegreen/active.conf", "/etc/nginx/nginx.conf", "/etc/nginx/bluegreen/.cand")
    assert "include /etc/nginx/bluegreen/.cand;" in copy and "active.conf" not in copy
    relative = "http {\n    include bluegreen/active.conf;\n}\n"
    assert "include /tmp/c;" in bluegreen_nginx.validation_config(relative, "/etc/nginx/bluegreen/active.conf", "/etc/nginx/nginx.conf", "/tmp/c")
    with pytest.raises(bluegreen_nginx.SwitchError, match="does not include"):
        bluegreen_nginx.validation_config("http { }", "/etc/nginx/bluegreen/active.conf", "/etc/nginx/nginx.conf", "/tmp/c")
