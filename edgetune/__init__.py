"""edgetune: from a pretrained model and a little labelled data to a verified int8 model on devices."""

import os

__version__ = "0.1.0"

# tensorflow-model-optimization works only with Keras 2 (tf_keras). The switch must be set
# before TensorFlow is first imported in a process, and every component and tool imports
# this package before it imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow 2.21's oneDNN kernels segfault training a 1x1 stride-2 Conv2D (a 60x60x8 input,
# the residual branch of a mini-Xception): prune died with SIGSEGV. The plain Eigen kernels
# are stable; like the switch above, it must be set before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Progress bars for single small artifact downloads only clutter the logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def code_version() -> str:
    """The package version, plus the git commit when the build recorded one."""
    sha = os.environ.get("EDGETUNE_GIT_SHA", "")
    return f"{__version__}+{sha[:12]}" if sha else __version__
