"""The two Dockerfiles: lint-clean (hadolint), non-root, a health check; build commands tagged."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune import __version__
from edgetune.images import AGENT_REPO, COMPONENT_IMAGE, COMPONENT_REPO, build_commands

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "images/agent/Dockerfile", ROOT / "images/components/Dockerfile"]


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is not installed: pip install -c requirements.lock -e '.[dev]'")
    return found


def test_hadolint_passes_on_both_dockerfiles() -> None:
    done = subprocess.run(
        [_hadolint(), *map(str, DOCKERFILES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install numpy\n")
    done = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # :latest


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.M)
    assert users and users[-1].isdigit() and users[-1] != "0"


def test_agent_image_checks_its_health_endpoint_without_curl() -> None:
    text = (ROOT / "images/agent/Dockerfile").read_text()
    check = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, flags=re.M | re.S)
    assert check is not None
    assert "/health" in check.group(1) and "urllib" in check.group(1)
    assert "curl" not in check.group(1)


def test_build_commands_tag_with_version_and_commit() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    component, agent = build_commands(sha)
    assert f"-t {COMPONENT_IMAGE} " in component  # what the compiled pipeline names
    assert f"-t {COMPONENT_REPO}:{__version__}-0123456789ab " in component
    assert f"--build-arg GIT_SHA={sha}" in component
    assert f"-t {AGENT_REPO}:{__version__}-0123456789ab " in agent
    assert "-dirty" in build_commands(sha, dirty=True)[0]
    assert "GIT_SHA" not in build_commands("")[0]  # not a git checkout: the version tag only


def test_both_images_start_from_the_same_base_pinned_by_digest() -> None:
    bases = {
        re.search(r"^ARG BASE_IMAGE=(\S+)$", f.read_text(), re.M).group(1) for f in DOCKERFILES
    }
    (base,) = bases
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base)
