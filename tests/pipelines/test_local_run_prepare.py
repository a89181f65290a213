"""`edgetune local-run` refuses unusable data before any agent or MLflow store starts."""

from __future__ import annotations

import argparse

import pytest

from edgetune.errors import EdgetuneError
from edgetune.pipelines.local_run import prepare


def args(data) -> argparse.Namespace:
    return argparse.Namespace(preset="tiny", overrides=[f"data_uri={data}"], agents=1)


def test_a_source_with_one_class_is_refused_up_front_in_one_line(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(6):
        (tmp_path / "only" / f"{i}.png").write_bytes(b"not decoded by the quick check")

    with pytest.raises(EdgetuneError) as error:
        prepare(args(tmp_path))

    assert "1 class with images (only)" in str(error.value) and "\n" not in str(error.value)


def test_a_class_with_too_few_files_is_refused_up_front(tmp_path):
    for label, n in (("a", 9), ("b", 1)):
        (tmp_path / label).mkdir()
        for i in range(n):
            (tmp_path / label / f"{i}.png").write_bytes(b"x")

    with pytest.raises(EdgetuneError, match="class 'b' has 1 image files; min_per_class="):
        prepare(args(tmp_path))
