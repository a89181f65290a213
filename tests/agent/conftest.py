"""Fixtures for the agent tests; they live in agent_support.py, shared with the deploy tests."""

import importlib.util
import sys
from pathlib import Path


def _load_support():
    # One module object for every conftest that loads it, so the tiny model is built once.
    name = "edgetune_tests_agent_support"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("agent_support.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


support = _load_support()
keys = support.keys
model_file = support.model_file
smoke_set = support.smoke_set
make_bundle = support.make_bundle
start_agent = support.start_agent
