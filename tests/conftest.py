"""Fixtures every test folder may use, defined once in tests/support/."""

import sys
from pathlib import Path

# tests/ is not a package (pytest runs with --import-mode=importlib); make `support` importable.
sys.path.insert(0, str(Path(__file__).parent))

from support.agents import (  # noqa: F401
    keys,
    make_bundle,
    model_file,
    other_model_file,
    smoke_set,
    start_agent,
)
from support.models import (  # noqa: F401
    convert_run,
    float_run,
    micro,
    run_name,
    small,
    tiny_data,
    tracking_uri,
    weights_file,
)
