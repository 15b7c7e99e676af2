"""The collection builds into a clean tarball that installs with ansible-galaxy, as users get it: `make build` needs
ansible-core only, the tarball holds nothing a user does not need (and no secret), and every module, role and
playbook works from the installed copy."""

import json
import os
import subprocess
import sys
import tarfile
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from sandbox import credentials

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")

# Everything the tarball may hold: the collection's content and what ansible-builder reads from an installed
# collection. A file outside these (a new test helper, a script, a settings file) fails the test until
# galaxy.yml's build_ignore leaves it out or it is added here on purpose.
SHIPPED = ("MANIFEST.json", "FILES.json", "README.md", "requirements.txt", "bindep.txt", "changelogs/changelog.yaml",
           "meta/", "plugins/", "roles/", "playbooks/", "docs/", "extensions/eda/", "extensions/awx/")
# Dev-only paths named explicitly, so that the message says what leaked.
DEV_ONLY = ("tests/", "bench/", "demo/", "tools/", "extensions/molecule/", "requirements-dev.txt", "pytest.ini", "Makefile",
            ".ci/", ".ansible-lint", ".gitignore", "BENCHMARKS.md", "changelogs/fragments/", "changelogs/config.yaml",
            "docs/development.md", "execution-environment.yml", "decision-environment.yml", ".venv/", ".ansible/",
            "build/", ".git/", ".pytest_cache/", ".hypothesis/")


def run(command, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(command, check=False, **kwargs)


def core_only_python(directory):
    """A Python that can import ansible-core and its dependencies and nothing else of the dev venv.

    A venv without pip and without site packages, whose site-packages holds links to exactly the files of the
    distributions ansible-core requires (followed recursively, environment markers honoured).
    """
    run([sys.executable, "-m", "venv", "--without-pip", str(directory)]).check_returncode()
    [site] = list(directory.glob("lib/python*/site-packages"))
    seen, todo = set(), ["ansible-core"]
    while todo:
        distribution = metadata.distribution(todo.pop())
        name = distribution.metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        todo += [req.name for req in map(Requirement, distribution.requires or ()) if not req.marker or req.marker.evaluate({"extra": ""})]
        for entry in distribution.files or ():
            top = entry.parts[0]
            source = distribution.locate_file(top)
            if top != ".." and not (site / top).exists() and os.path.exists(str(source)):
                os.symlink(str(source), str(site / top))
    tools = directory / "tools"
    tools.mkdir()
    galaxy = tools / "ansible-galaxy"
    galaxy.write_text("#!%s\nimport sys\nfrom ansible.cli.galaxy import main\nsys.exit(main())\n" % (directory / "bin" / "python"))
    galaxy.chmod(0o755)
    return directory / "bin" / "python", tools, seen


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`make build` run with ansible-core alone: no .venv (VENV points nowhere) and only that minimal Python's
    ansible-galaxy on PATH. Returns the tarball and the distributions that Python could import."""
    tmp = tmp_path_factory.mktemp("build")
    python, tools, distributions = core_only_python(tmp / "core-only")
    env = {"PATH": "%s:/usr/bin:/bin" % tools, "HOME": str(tmp), "LANG": "C.UTF-8"}
    output = tmp / "out"
    result = run(["make", "-s", "build", "VENV=%s" % (tmp / "no-venv"), "BUILD_OUTPUT=%s" % output], cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    tarballs = list(output.glob("selfheal-devops-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0], python, distributions


def test_make_build_needs_ansible_core_only(built):
    tarball, python, distributions = built
    assert distributions == {"ansible-core", "jinja2", "markupsafe", "pyyaml", "cryptography", "cffi", "pycparser",
                             "packaging", "resolvelib"}, distributions
    # The Python make build used really lacked the dev tools (so the build did not need them).
    for module in ("aiohttp", "requests", "pytest", "ansible_rulebook", "molecule"):
        assert run([str(python), "-c", "import %s" % module]).returncode != 0, "%s importable in the core-only Python" % module
    assert run([str(python), "-c", "import ansible.cli.galaxy"]).returncode == 0


def test_make_build_says_what_is_missing_without_ansible_galaxy(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = run(["make", "-s", "build", "VENV=%s" % (tmp_path / "no-venv"), "BUILD_OUTPUT=%s" % tmp_path, "ANSIBLE_GALAXY="],
                 cwd=ROOT, env=env)
    assert result.returncode != 0 and "pip install ansible-core" in result.stderr, result.stderr
    assert not list(tmp_path.glob("*.tar.gz"))


def test_the_tarball_holds_no_dev_only_file_and_no_secret(built):
    tarball = built[0]
    with tarfile.open(str(tarball)) as archive:
        members = archive.getmembers()
        names = [member.name for member in members]
        texts = {member.name: archive.extractfile(member).read().decode("utf-8", "replace") for member in members if member.isfile()}
    leaked = [name for name in names if name.startswith(DEV_ONLY) or name + "/" in DEV_ONLY]
    assert not leaked, "dev-only files in the tarball: %s" % leaked[:20]
    parents = {entry.split("/", maxsplit=1)[0] for entry in SHIPPED if "/" in entry.rstrip("/")}  # directory entries: extensions, ...
    unexpected = [name for name in names if not (name.startswith(SHIPPED) or name + "/" in SHIPPED or name in parents)]
    assert not unexpected, "files outside the shipped set: %s" % unexpected[:20]
    assert not [name for name in names if "/__pycache__" in name or name.endswith((".pyc", ".pyo"))]
    for expected in ("MANIFEST.json", "README.md", "meta/runtime.yml", "meta/extensions.yml", "requirements.txt",
                     "plugins/module_utils/_http.py", "extensions/eda/rulebooks/self_healing_controller.yml",
                     "extensions/awx/credential_types/dynatrace.yml", "changelogs/changelog.yaml"):
        assert expected in names, expected
    holding = sorted(name for name, text in texts.items() for secret in credentials.SECRETS if secret in text)
    assert not holding, "the sandbox's credentials are in %s" % holding


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """The tarball installed offline into its own collections path, and an env that sees only that copy."""
    root = tmp_path_factory.mktemp("installed")
    result = run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(root), str(built[0])])
    assert result.returncode == 0, result.stdout + result.stderr
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False", ANSIBLE_NOCOLOR="1",
               HOME=str(root))
    return root / "ansible_collections" / "selfheal" / "devops", env


def test_the_tarball_installs(installed):
    path, env = installed
    assert json.loads((path / "MANIFEST.json").read_text())["collection_info"]["name"] == "devops"
    listing = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "selfheal.devops"], env=env, cwd=str(path.parent))
    assert str(path.parent.parent) in listing.stdout and "selfheal.devops" in listing.stdout, listing.stdout + listing.stderr


def test_every_module_and_role_renders_with_ansible_doc_from_the_installed_copy(installed):
    path, env = installed
    env = dict(env, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    modules = sorted(name[:-3] for name in os.listdir(str(path / "plugins" / "modules")) if name.endswith(".py") and not name.startswith("_"))
    assert len(modules) >= 10, modules
    listed = run([os.path.join(BIN, "ansible-doc"), "-t", "module", "-l", "selfheal.devops", "-j"], env=env, cwd=str(path))
    assert listed.returncode == 0, listed.stderr
    assert sorted(name.split(".")[-1] for name in json.loads(listed.stdout)) == modules
    # One ansible-doc run renders them all (and fails naming the module whose documentation does not parse).
    doc = run([os.path.join(BIN, "ansible-doc"), "-t", "module"] + ["selfheal.devops." + module for module in modules], env=env, cwd=str(path))
    assert doc.returncode == 0 and not doc.stderr.strip(), doc.stderr[-3000:]
    for module in modules:
        header = "> MODULE selfheal.devops.%s (%s)" % (module, path / "plugins" / "modules" / (module + ".py"))
        assert header in doc.stdout, "%s was not rendered from the installed copy" % module
    roles = sorted(os.listdir(str(path / "roles")))
    doc = run([os.path.join(BIN, "ansible-doc"), "-t", "role"] + ["selfheal.devops." + role for role in roles], env=env, cwd=str(path))
    assert doc.returncode == 0 and not doc.stderr.strip(), doc.stderr[-3000:]
    text = doc.stdout.replace("*", "")  # without colour, ansible-doc marks role names as *name*
    for role in roles:
        assert "> ROLE: selfheal.devops.%s (%s)" % (role, path) in text, role
    assert text.count("ENTRY POINT: main") == len(roles)


def test_the_installed_playbooks_are_valid(installed):
    path, env = installed
    playbooks = sorted(entry.name for entry in (path / "playbooks").glob("*.yml"))  # playbooks/vars/ holds vars files
    assert playbooks
    for playbook in playbooks:
        name = "selfheal.devops." + playbook.rsplit(".", 1)[0]
        result = run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", "-i", "localhost,", name], env=env, cwd=str(path.parent))
        assert result.returncode == 0, (name, result.stdout + result.stderr)
