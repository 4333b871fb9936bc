"""requirements.lock is what `make` and CI install: it must cover pyproject.toml and pin the torch family together."""

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked() -> dict[str, Version]:
    """Package -> the version the lock installs on this machine (markers evaluated here)."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match and (match[3] is None or Marker(match[3]).evaluate()):
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["dev"] + extras["lm"]]


def test_every_declared_requirement_is_locked_at_a_version_it_accepts():
    pins = locked()
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}: run `make lock`"
        )


def test_torch_family_is_pinned_exactly_and_together():
    pins = locked()
    exact = {str(r.specifier) for r in declared() if r.name in ("torch", "torchaudio")}
    assert exact == {f"=={pins['torch']}"}, (
        "pyproject must pin torch and torchaudio to the same exact release"
    )
    assert pins["torch"].release == pins["torchaudio"].release


def test_every_locked_line_carries_a_hash():
    text = (ROOT / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert entries and all("--hash=sha256:" in entry for entry in entries if "==" in entry)
