"""restart_guard's window arithmetic and record reading."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _process as rg


@pytest.mark.parametrize("attempts, allowed, recent", [
    ([], True, []),
    ([100.0], True, [100.0]),
    ([50.0, 100.0], False, [50.0, 100.0]),
    ([10.0, 50.0, 100.0], False, [50.0, 100.0]),   # 10 is outside the window [100 - 60, 100]
    ([10.0, 20.0, 100.0], True, [100.0]),
    ([500.0], True, []),                           # a time in the future (clock change) does not count
])
def test_window(attempts, allowed, recent):
    assert rg.decide(attempts, now=100.0, window=60, max_attempts=2) == (recent, allowed)


def test_reading(tmp_path):
    assert rg.read_attempts(str(tmp_path / "missing.json")) == ([], None)
    for text, message in (("[1, 2]", "no attempts list"), ("{", "not JSON"), ('{"attempts": 5}', "no attempts list")):
        path = tmp_path / "r.json"
        path.write_text(text)
        attempts, warning = rg.read_attempts(str(path))
        assert attempts == [] and message in warning
    path.write_text('{"name": "web", "attempts": [1.5, "x", 2]}')
    assert rg.read_attempts(str(path)) == ([1.5, 2.0], None)
