"""The set-up is reproducible: the committed lock agrees with pyproject.toml, this environment
was installed from it, and scripts/setup.sh installs every program the tests start."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from proxy import cli

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", re.M)
LOCKS = (("run.lock", ("native",)), ("test.lock", ("test", "native")))
"""Each lock and the extras it holds (scripts/lock)."""
# Programs every Debian-based machine has, so scripts/setup.sh need not install them.
BASE_COMMANDS = {"python3", "setpriv", "mecha"}


def locked(name: str) -> dict[str, str]:
    """The lock's pins that apply to this interpreter and platform: name -> version."""
    pins: dict[str, str] = {}
    for found in PIN.finditer((ROOT / "requirements" / name).read_text()):
        marker = found.group(3)
        if marker is None or Marker(marker).evaluate():
            pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def roots(extras: tuple[str, ...]) -> list[Requirement]:
    project = PYPROJECT["project"]
    texts = [*project["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [req for req in map(Requirement, texts) if applies(req, ())]


def applies(req: Requirement, extras: tuple[str, ...]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution the requirements need, read from what is installed."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        wanted = tuple(sorted(req.extras))
        key = f"{name}[{','.join(wanted)}]"
        if key in seen:
            continue
        seen.add(key)
        needs = importlib.metadata.requires(name) or []
        todo += [sub for sub in map(Requirement, needs) if applies(sub, wanted)]
    return {key.split("[")[0] for key in seen}


def test_every_requirement_is_locked_at_a_version_it_allows() -> None:
    for lock, extras in LOCKS:
        pins = locked(lock)
        for req in roots(extras):
            name = canonicalize_name(req.name)
            assert name in pins, f"{req} is not in requirements/{lock}: run scripts/lock"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"requirements/{lock} pins {name}=={pins[name]}, outside {req}: run scripts/lock"
            )


def test_the_lock_holds_exactly_what_the_requirements_need() -> None:
    for lock, extras in LOCKS:
        needed, pins = closure(roots(extras)), set(locked(lock))
        assert needed - pins == set(), f"needed but not in requirements/{lock}"
        assert pins - needed == set(), f"in requirements/{lock} but nothing needs them"


def test_the_run_lock_agrees_with_the_test_lock() -> None:
    test = locked("test.lock")
    for name, version in locked("run.lock").items():
        assert test[name] == version, f"{name}: run.lock {version}, test.lock {test[name]}"


def test_this_environment_was_installed_from_the_lock() -> None:
    for name, version in locked("test.lock").items():
        installed = importlib.metadata.version(name)
        assert installed == version, f"{name} {installed} is installed, the lock says {version}"


def test_the_proto_generator_pins_what_the_lock_pins() -> None:
    script = (ROOT / "scripts" / "gen-protos.sh").read_text()
    found = re.search(r"^GRPCIO_TOOLS=(\S+)", script, re.M)
    assert found is not None, "scripts/gen-protos.sh sets GRPCIO_TOOLS"
    assert found.group(1) == locked("test.lock")["grpcio-tools"]


def setup_commands() -> dict[str, str]:
    script = (ROOT / "scripts" / "setup.sh").read_text()
    block = re.search(r"^TEST_COMMANDS=\((.*?)^\)", script, re.M | re.S)
    assert block is not None, "scripts/setup.sh declares TEST_COMMANDS"
    pairs = re.findall(r"^\s*([\w.-]+):([\w.-]+)\s*$", block.group(1), re.M)
    return dict(pairs)


def test_setup_installed_every_program_it_lists() -> None:
    missing = [cmd for cmd in setup_commands() if shutil.which(cmd) is None]
    assert missing == [], "not on PATH: run scripts/setup.sh --test"


def test_every_program_the_tests_start_is_installed_by_setup() -> None:
    started = re.compile(
        r"""(?:(?:run|Popen|start|check_output|argv\s*=)\(?\s*\[\s*|which\(\s*)"([\w.-]+)"[,)]"""
    )
    used = set()
    for path in (ROOT / "tests").rglob("*.py"):
        used |= set(started.findall(path.read_text()))
    assert used - set(setup_commands()) - BASE_COMMANDS == set()


def test_mecha_version_is_the_installed_distributions() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == cli.DISTRIBUTION
    assert cli.version() == project["version"] == importlib.metadata.version(cli.DISTRIBUTION)
