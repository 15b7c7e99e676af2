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


def test_name_decisions():
    params = {"patterns": ["*.tmp"], "excludes": ["keep/*", "*.lock"], "age": "1h", "min_size": "10",
              "age_stamp": "mtime", "one_file_system": True, "remove_empty_dirs": False, "max_files": 0,
              "sample_size": 5, "skip_open_files": False}
    cleaner = tc.Cleaner(params, check_mode=True, now=time.time())
    assert cleaner.name_reason("a.tmp", "a.tmp") is None
    assert cleaner.name_reason("a.tmp", "keep/a.tmp") == "excluded"
    assert cleaner.name_reason("x.lock", "x.lock") == "excluded"
    assert cleaner.name_reason("a.log", "a.log") == "not_matched"


def test_every_file_is_counted_once_with_its_reason(tmp_path):
    """The walk's decisions in check mode: each file lands in exactly one bucket, nothing is deleted."""
    old = time.time() - 7200
    files = {"go/a.tmp": (100, old), "go/deeper/b.tmp": (100, old), "young.tmp": (100, None),
             "small.tmp": (5, old), "x.lock": (100, old), "keep/c.tmp": (100, old), "d.log": (100, old),
             "held.tmp": (100, old)}
    for relative, (size, mtime) in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        if mtime:
            os.utime(path, (mtime, mtime))
    params = {"patterns": ["*.tmp"], "excludes": ["keep", "*.lock"], "age": "1h", "min_size": "10",
              "age_stamp": "mtime", "one_file_system": True, "remove_empty_dirs": True, "max_files": 0,
              "sample_size": 1, "skip_open_files": False}
    cleaner = tc.Cleaner(params, check_mode=True, now=time.time())
    held = os.stat(tmp_path / "held.tmp")
    cleaner.open = {(held.st_dev, held.st_ino)}
    cleaner.clean_streaming(str(tmp_path))
    assert (cleaner.deleted, cleaner.bytes, cleaner.dirs_removed) == (2, 200, 0)
    assert cleaner.kept == {"too_young": 1, "excluded": 2, "too_small": 1, "not_matched": 1, "open": 1,
                            "other_fs": 0, "limit": 0}
    assert len(cleaner.sample) == 1 and cleaner.sample[0].endswith(".tmp")
    assert all((tmp_path / relative).exists() for relative in files)


def test_max_files_stops_deleting(tmp_path):
    old = time.time() - 7200
    for number in range(10):
        path = tmp_path / ("d%d" % (number % 3)) / ("f%d" % number)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    params = {"patterns": ["*"], "excludes": [], "age": "1h", "min_size": "0", "age_stamp": "mtime",
              "one_file_system": True, "remove_empty_dirs": False, "max_files": 4, "sample_size": 20,
              "skip_open_files": False}
    cleaner = tc.Cleaner(params, check_mode=False, now=time.time())
    cleaner.clean_streaming(str(tmp_path))
    assert cleaner.deleted == 4 and cleaner.kept["limit"] == 6
    assert sum(len(files) for dummy, dummy2, files in os.walk(str(tmp_path))) == 6


def test_big_directories_are_deleted_in_batches(tmp_path):
    old = time.time() - 7200
    for number in range(10):
        path = tmp_path / ("f%d" % number)
        path.write_bytes(b"x" * 3)
        os.utime(path, (old, old))
    params = {"patterns": ["*"], "excludes": [], "age": "1h", "min_size": "0", "age_stamp": "mtime",
              "one_file_system": True, "remove_empty_dirs": False, "max_files": 0, "sample_size": 20,
              "skip_open_files": False}
    cleaner = tc.Cleaner(params, check_mode=False, now=time.time())
    cleaner.BATCH = 3
    cleaner.clean_streaming(str(tmp_path))
    assert (cleaner.deleted, cleaner.bytes, len(cleaner.sample)) == (10, 30, 10)
    assert not list(tmp_path.iterdir())
