"""The installed versions are the locked ones: a fresh install resolves exactly what the
suite passed with (a different pyarrow once broke the default split on a fresh install)."""

import os
import re
from importlib import metadata

from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = ("tensorflow", "tensorflow-transform", "tfx-bsl", "apache-beam", "pyarrow", "numpy",
        "keras")


def _locked():
    pins = {}
    with open(os.path.join(REPO, "constraints.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_core_libraries_are_locked_and_installed_at_their_pins():
    pins = _locked()
    for name in CORE:
        assert name in pins, f"constraints.txt does not pin {name}"
        assert metadata.version(name) == pins[name], name


def test_every_locked_package_that_is_installed_has_its_pinned_version():
    wrong = {}
    for name, version in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # e.g. a platform-only dependency
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs locked: {wrong}"


def test_the_locked_versions_satisfy_the_ranges_workers_resolve():
    pins = _locked()
    for requirement in metadata.requires("beam-pipeline") or []:
        req = Requirement(requirement)
        if req.marker is not None:
            continue  # an extra's requirement
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{name} is not locked"
        assert req.specifier.contains(pins[name], prereleases=True), (name, str(req.specifier))
