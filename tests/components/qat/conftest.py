"""Fixtures for the qat tests: tiny data, models and an MLflow store (tests/model_support.py)."""

import importlib.util
import sys
from pathlib import Path


def _load_support():
    # One module object for every conftest that loads it: its caches train each model once.
    name = "edgetune_tests_model_support"
    if name not in sys.modules:
        path = next(
            p / "model_support.py"
            for p in Path(__file__).parents
            if (p / "model_support.py").is_file()
        )
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


support = _load_support()
globals().update({name: getattr(support, name) for name in support.FIXTURES})
