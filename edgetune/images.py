"""Container image tags: the one place they are defined.

The component decorators and the Dockerfiles' build commands (Makefile) read these.
"""

from edgetune import __version__

REGISTRY = "ghcr.io/edgetune"
COMPONENT_IMAGE = f"{REGISTRY}/edgetune-components:{__version__}"
AGENT_IMAGE = f"{REGISTRY}/edgetune-agent:{__version__}"
