"""The execution environment and the decision environment definitions are valid for ansible-builder, render a
build context holding the collection tarball, and agree with the versions the project is tested with (building
the images needs a container engine, which the test machines do not have)."""

import os
import re
import subprocess

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
DEFINITIONS = ("execution-environment.yml", "decision-environment.yml")


def galaxy_version():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)["version"]


def load(name):
    with open(os.path.join(ROOT, name)) as handle:
        return yaml.safe_load(handle)


def pinned(package):
    """The version requirements-dev.txt pins (what the tests run)."""
    with open(os.path.join(ROOT, "requirements-dev.txt")) as handle:
        for line in handle:
            requirement = line.split("#", 1)[0].strip()
            if requirement and Requirement(requirement).name == package:
                return next(iter(Requirement(requirement).specifier)).version
    raise AssertionError("%s is not pinned in requirements-dev.txt" % package)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection built as users get it, in a build/ folder as the definitions expect."""
    workdir = tmp_path_factory.mktemp("definitions")
    (workdir / "build").mkdir()
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                    str(workdir / "build"), ROOT], check=True, capture_output=True, text=True)
    path = workdir / "build" / ("selfheal-devops-%s.tar.gz" % galaxy_version())
    assert path.exists()
    return path


def create(definition, tarball, tmp_path):
    """ansible-builder create with the definition beside a build/ holding the tarball; the context directory."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    os.symlink(str(tarball.parent), str(workdir / "build"))
    for name in (definition, "requirements.txt", "bindep.txt"):
        with open(os.path.join(ROOT, name)) as handle:
            (workdir / name).write_text(handle.read())
    context = tmp_path / "context"
    result = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", definition, "-c", str(context),
                             "--output-filename", "Containerfile"], cwd=str(workdir), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return context


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_ansible_builder_create_renders_the_build_context(definition, tarball, tmp_path):
    text = open(os.path.join(ROOT, definition)).read()
    assert "selfheal-devops-%s.tar.gz" % galaxy_version() in text, "%s names another version" % definition
    context = create(definition, tarball, tmp_path)
    containerfile = (context / "Containerfile").read_text()
    assert "ubi9/python-311" in containerfile
    assert "ansible-galaxy collection install" in containerfile and "install-from-bindep" in containerfile
    # The collection tarball is in the context where the galaxy stage installs it from.
    assert (context / "_build" / "build" / tarball.name).exists()
    requirements = (context / "_build" / "requirements.yml").read_text()
    assert "build/%s" % tarball.name in requirements and "type: file" in requirements


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_the_definition_admits_the_versions_the_tests_run(definition):
    dependencies = load(definition)["dependencies"]
    for package in ("ansible-core", "ansible-runner"):
        spec = Requirement(dependencies[package.replace("-", "_")]["package_pip"])
        assert spec.name == package and spec.specifier.contains(pinned(package)), (definition, str(spec), pinned(package))


def test_the_decision_environment_has_the_rule_engine_java_and_the_collection(tarball, tmp_path):
    definition = load("decision-environment.yml")
    [rulebook] = [Requirement(line) for line in definition["dependencies"]["python"] if Requirement(line).name == "ansible-rulebook"]
    assert rulebook.specifier.contains(pinned("ansible-rulebook")), str(rulebook)
    context = create("decision-environment.yml", tarball, tmp_path)
    bindep = (context / "_build" / "bindep.txt").read_text()
    assert re.search(r"^java-17-openjdk-headless \[platform:rpm\]$", bindep, re.M), bindep
    assert "ansible-rulebook" in (context / "_build" / "requirements.txt").read_text()
    containerfile = (context / "Containerfile").read_text()
    java_home = re.search(r"^ENV JAVA_HOME=(\S+)$", containerfile, re.M)
    assert java_home and "17" in java_home.group(1), "JAVA_HOME is not set to a Java 17 runtime in the final stage"
    assert containerfile.index("FROM base AS final") < java_home.start()


def test_the_collection_brings_its_own_python_requirements(tarball, tmp_path):
    """What ansible-builder's introspection (run inside the image build) finds in the installed tarball: the
    event sources' and modules' Python requirements, so neither definition has to repeat them."""
    collections = tmp_path / "collections"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(collections),
                    str(tarball)], check=True, capture_output=True, text=True)
    result = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize", str(collections)],
                            capture_output=True, text=True, check=True)
    found = yaml.safe_load(result.stdout.split("---", 1)[1])
    names = {Requirement(line.split("#", 1)[0].strip()).name for line in found["python"]}
    with open(os.path.join(ROOT, "requirements.txt")) as handle:
        runtime = {Requirement(line.split("#", 1)[0].strip()).name for line in handle if line.split("#", 1)[0].strip()}
    assert runtime and runtime <= names, (runtime, names)
