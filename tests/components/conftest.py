"""Component tests make many pipeline runs in one process, with no rival creating a parent."""

import pytest

from edgetune.components.common import tracking


@pytest.fixture(autouse=True)
def quick_parent_settle(monkeypatch):
    """No need to wait a second for a rival parent run (test_parent_run races real ones)."""
    monkeypatch.setattr(tracking, "PARENT_SETTLE_S", 0.05)
