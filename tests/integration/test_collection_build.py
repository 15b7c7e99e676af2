"""The collection builds into a clean tarball that installs with ansible-galaxy, as users get it."""

import os
import subprocess
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
FORBIDDEN_PREFIXES = (".venv/", ".ansible/", "tests/output/", "build/", ".git/", ".pytest_cache/", ".hypothesis/")


def test_build_is_clean_and_installs(tmp_path):
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(tmp_path), ROOT],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    tarballs = list(tmp_path.glob("selfheal-devops-*.tar.gz"))
    assert len(tarballs) == 1
    with tarfile.open(str(tarballs[0])) as archive:
        names = archive.getnames()
    offending = [name for name in names if name.startswith(FORBIDDEN_PREFIXES) or "/__pycache__/" in name or name.endswith(".pyc")]
    assert not offending, offending[:10]
    for expected in ("MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml", "meta/extensions.yml",
                     "plugins/module_utils/_http.py", "requirements.txt"):
        assert expected in names, expected

    install_root = tmp_path / "collections"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(install_root), str(tarballs[0])],
                   check=True, capture_output=True, text=True)
    installed = install_root / "ansible_collections" / "selfheal" / "devops"
    assert (installed / "MANIFEST.json").exists()
    listing = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "-p", str(install_root)],
                             check=True, capture_output=True, text=True)
    assert "selfheal.devops" in listing.stdout
