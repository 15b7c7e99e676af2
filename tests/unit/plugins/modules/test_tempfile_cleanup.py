"""tempfile_cleanup's pure parts: amounts, root checks, candidate decisions."""

import os
import time

import pytest

from ansible_collections.selfheal.devops.plugins.modules import tempfile_cleanup as tc


@pytest.mark.parametrize("text, expected", [("0", 0), ("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800),
                                            ("1w", 604800), ("1.5h", 5400), (" 15 ", 15)])
def test_ages(text, expected):
    assert tc.parse_amount(text, tc.UNITS, "age") == expected


@pytest.mark.parametrize("text, expected", [("0", 0), ("512k", 524288), ("10M", 10485760), ("1g", 1073741824), ("100b", 100)])
def test_sizes(text, expected):
    assert tc.parse_amount(text, tc.SIZES, "min_size") == expected


@pytest.mark.parametrize("text", ["", "two days", "-1d", "5y", "1e3"])
def test_bad_amounts_are_refused(text):
    with pytest.raises(tc.Refused):
        tc.parse_amount(text, tc.UNITS, "age")


def test_roots(tmp_path):
    inside = tmp_path / "cache"
    inside.mkdir()
    assert tc.check_roots([str(inside)], [str(tmp_path)]) == [str(inside)]
    (tmp_path / "link").symlink_to(inside)
    for paths, allowed, message in (([str(tmp_path / "link")], [str(tmp_path)], "symlink"),
                                    (["/usr"], ["/tmp"], "system directory"),
                                    ([str(inside)], ["/var"], "system directory"),
                                    ([str(inside)], [str(tmp_path / "other")], "outside the allowed roots"),
                                    ([str(tmp_path / "missing")], [str(tmp_path)], "not a directory"),
                                    ([str(inside) + "/../cache/../.."], [str(inside)], "outside")):
        with pytest.raises(tc.Refused) as info:
            tc.check_roots(paths, allowed)
        assert message in str(info.value)


def test_candidate_decisions():
    """relative paths are passed as callables: the walk builds strings only when a decision needs them."""
    params = {"patterns": ["*.tmp"], "excludes": ["keep/*", "*.lock"], "age": "1h", "min_size": "10",
              "age_stamp": "mtime", "one_file_system": True, "remove_empty_dirs": False, "max_files": 0,
              "sample_size": 5, "skip_open_files": False}
    cleaner = tc.Cleaner(params, check_mode=True, now=time.time())
    old = os.stat_result((0o100644, 1, 1, 1, 0, 0, 100, 0, time.time() - 7200, 0))
    young = os.stat_result((0o100644, 1, 1, 1, 0, 0, 100, 0, time.time(), 0))
    small = os.stat_result((0o100644, 1, 1, 1, 0, 0, 5, 0, time.time() - 7200, 0))
    assert cleaner.candidate("a.tmp", lambda: "a.tmp", old) is None
    assert cleaner.candidate("a.tmp", lambda: "keep/a.tmp", old) == "excluded"
    assert cleaner.candidate("x.lock", lambda: "x.lock", old) == "excluded"
    assert cleaner.candidate("a.log", lambda: "a.log", old) == "not_matched"
    assert cleaner.candidate("a.tmp", lambda: "a.tmp", young) == "too_young"
    assert cleaner.candidate("a.tmp", lambda: "a.tmp", small) == "too_small"
