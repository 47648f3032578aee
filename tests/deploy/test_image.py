"""scripts/build-image: compose/Dockerfile builds with podman over a Debian base made with
debootstrap, and the image, started, answers /readyz with the embedded default and against the
local services. Slow: about 8 minutes on a fresh 2-core machine (base and layers are reused
afterwards), so it has a timeout of its own."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.deploy.manifests import REPO


@pytest.mark.timeout(1800)
def test_the_image_builds_and_answers_readyz() -> None:
    done = subprocess.run(
        [str(REPO / "scripts" / "build-image")], cwd=REPO, capture_output=True, text=True, timeout=1750
    )
    assert done.returncode == 0, f"scripts/build-image failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    answers = dict(re.findall(r"^build-image: (.+?): /readyz 200 after \d+ s: (\{.*\})$", done.stderr, re.M))
    assert set(answers) == {"embedded default", "local services"}, done.stderr[-2000:]
    for answer in answers.values():
        assert json.loads(answer) == {
            "status": "ready",
            "checks": {"broker": "ok", "timeseries": "ok", "registry": "ok"},
        }


def test_the_dockerfile_copies_every_package_tasker_installs() -> None:
    # A package left out builds fine and dies at the first `tasker` command in the container.
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (REPO / "compose" / "Dockerfile").read_text(), re.M))
    assert packages == copied
