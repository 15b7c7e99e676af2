"""docs/reference is generated from the code's documentation; this keeps it in step (run `make docs` to update)."""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_reference_pages_match_the_documentation():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "docs_reference.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
