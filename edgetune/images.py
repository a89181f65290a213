"""Container image tags: the one place they are defined.

The component decorators read COMPONENT_IMAGE; `make images` prints the build commands, each
image tagged with the version (what the compiled pipeline names) and with the git commit.
"""

from __future__ import annotations

import sys

from edgetune import __version__

REGISTRY = "ghcr.io/edgetune"
COMPONENT_REPO = f"{REGISTRY}/edgetune-components"
AGENT_REPO = f"{REGISTRY}/edgetune-agent"
COMPONENT_IMAGE = f"{COMPONENT_REPO}:{__version__}"
AGENT_IMAGE = f"{AGENT_REPO}:{__version__}"
DOCKERFILES = {
    COMPONENT_REPO: "images/components/Dockerfile",
    AGENT_REPO: "images/agent/Dockerfile",
}


def commit_tag(git_sha: str, *, dirty: bool = False) -> str:
    """The tag naming the exact code: `<version>-<12 hex of the commit>` (`-dirty` if edited)."""
    return f"{__version__}-{git_sha[:12]}" + ("-dirty" if dirty else "")


def build_commands(git_sha: str = "", *, dirty: bool = False) -> list[str]:
    """`docker build` for each image, from the repository root, tagged with the version.

    When known, the commit is a second tag, and the component image also records it as
    $EDGETUNE_GIT_SHA.
    """
    out = []
    for repo, dockerfile in DOCKERFILES.items():
        tags = [f"-t {repo}:{__version__}"]
        build_args = []
        if git_sha:
            tags.append(f"-t {repo}:{commit_tag(git_sha, dirty=dirty)}")
            build_args.append(f"--build-arg GIT_SHA={git_sha}")
        out.append(" ".join(["docker build -f", dockerfile, *build_args, *tags, "."]))
    return out


if __name__ == "__main__":  # `make images`: python -m edgetune.images <sha> [dirty]
    sha = sys.argv[1] if len(sys.argv) > 1 else ""
    sys.stdout.write("\n".join(build_commands(sha, dirty="dirty" in sys.argv[2:])) + "\n")
