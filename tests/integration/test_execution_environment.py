"""The execution environment definition is valid for ansible-builder (building it needs a container engine)."""

import os
import subprocess

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")


def test_ansible_builder_create_renders_the_build_context(tmp_path):
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    with open(os.path.join(ROOT, "execution-environment.yml")) as handle:
        definition = handle.read()
    assert "selfheal-devops-%s.tar.gz" % version in definition, "execution-environment.yml names another version"
    # ansible-builder resolves file paths relative to the definition: give it a built tarball beside it.
    workdir = tmp_path / "ee"
    (workdir / "build").mkdir(parents=True)
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                    str(workdir / "build"), ROOT], check=True, capture_output=True, text=True)
    for name in ("execution-environment.yml", "requirements.txt", "bindep.txt"):
        (workdir / name).write_text(open(os.path.join(ROOT, name)).read())
    result = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                             "-c", str(tmp_path / "context"), "--output-filename", "Containerfile"],
                            cwd=str(workdir), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "ubi9/python-311" in containerfile
    assert "ansible-galaxy" in containerfile or "install-from-bindep" in containerfile
    context_files = {p.name for p in (tmp_path / "context").rglob("*")}
    assert "requirements.txt" in context_files and "bindep.txt" in context_files
    # The collection tarball is in the context where the galaxy stage installs it from.
    assert (tmp_path / "context" / "_build" / "build" / ("selfheal-devops-%s.tar.gz" % version)).exists()
    assert "ansible-galaxy collection install" in containerfile
