"""Tests, benchmarks and the demo share one import path (the venv's .pth: tests/, demo/, build/collections) and
never edit sys.path or import conftest: a script that does either breaks when it is moved, and hides which code it
really runs (tests/sandbox/jira.py once shadowed the `jira` SDK that way)."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pytest's own bootstrap (the collection link) and the offline get-pip shim that ansible-test runs from its cache.
ALLOWED = {os.path.join("tests", "conftest.py"), os.path.join("tests", "utils", "get_pip_offline.py")}


def python_files():
    for top in ("tests", "bench", "demo"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in ("output", "__pycache__")]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    if os.path.relpath(path, ROOT) not in ALLOWED:
                        yield path


def is_sys_path(node):
    return isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
        and node.value.id == "sys"


def offences(source):
    """(line, what) for every edit of sys.path and every import of conftest in source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value) \
                and node.func.attr in ("insert", "append", "extend", "remove", "pop", "clear"):
            found.append((node.lineno, "sys.path.%s()" % node.func.attr))
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        for target in targets:
            base = target.value if isinstance(target, ast.Subscript) else target
            if is_sys_path(base):
                found.append((node.lineno, "assignment to sys.path"))
        if isinstance(node, ast.Import) and any(alias.name == "conftest" for alias in node.names):
            found.append((node.lineno, "import conftest"))
        if isinstance(node, ast.ImportFrom) and node.module == "conftest":
            found.append((node.lineno, "from conftest import"))
    return found


@pytest.mark.parametrize("source, expected", [
    ("import sys\nsys.path.insert(0, 'x')\n", [(2, "sys.path.insert()")]),
    ("import sys\nsys.path[:0] = ['x']\n", [(2, "assignment to sys.path")]),
    ("import sys\nsys.path += ['x']\n", [(2, "assignment to sys.path")]),
    ("import conftest\nfrom conftest import run_playbook\n", [(1, "import conftest"), (2, "from conftest import")]),
    ("import sys\nenv = {'PYTHONPATH': ':'.join(sys.path)}\nfrom utils import estate\n", []),
])
def test_the_check_finds_what_it_looks_for(source, expected):
    assert offences(source) == expected


def test_no_test_benchmark_or_demo_edits_sys_path_or_imports_conftest():
    found = []
    for path in python_files():
        with open(path, encoding="utf-8") as handle:
            found += ["%s:%d %s" % (os.path.relpath(path, ROOT), line, what) for line, what in offences(handle.read())]
    assert found == []


def test_the_sandbox_and_the_harness_are_packages_on_one_import_path():
    from sandbox import credentials, jira as sandbox_jira
    from utils import estate

    assert os.path.dirname(credentials.__file__) == os.path.join(ROOT, "tests", "sandbox")
    assert os.path.dirname(estate.__file__) == os.path.join(ROOT, "tests", "utils")
    assert sandbox_jira.__name__ == "sandbox.jira"
    import jira  # the vendor's SDK, not the sandbox's Jira

    assert os.path.join("tests", "sandbox") not in jira.__file__


def test_every_file_the_molecule_scenarios_name_exists():
    """The scenarios start parts of the test estate by path or module name; a move must not leave them behind."""
    import glob
    import re

    named = []
    for path in glob.glob(os.path.join(ROOT, "extensions", "molecule", "*", "*.yml")):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        named += [(path, rel) for rel in re.findall(r"collection_root \}\}(/[\w./-]+)", text)]
        named += [(path, rel) for rel in re.findall(r"collection_root ~ '(/[\w./-]+)'", text)]
        named += [(path, "/tests/" + module.replace(".", "/") + ".py")
                  for module in re.findall(r"'-m', '((?:sandbox|utils)\.[\w.]+)'", text)]
    assert named, "the scenarios name no file: the patterns above are out of date"
    missing = ["%s: %s" % (os.path.relpath(path, ROOT), rel) for path, rel in named if not os.path.exists(ROOT + rel)]
    assert missing == []
