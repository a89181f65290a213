"""Step outputs as typed files: the class that writes an output is the class that reads it.

A step's output class (`IngestReport`, `Selection`, `Evaluation`, `RolloutReport`, ...) lives
in its step's core and mixes in `StepOutput`: it names its file in the artifact folder and
says which metrics, summary.json part and artifact metadata it yields. Pure: no kfp, no mlflow
(the wrapper hands an output to `tracking.record`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Self

from edgetune import files
from edgetune.errors import EdgetuneError


class StepOutput:
    """Mixin for a step output kept as one JSON file (`FILE`) in a KFP artifact folder.

    Subclasses define `FILE`, `to_dict()` and `from_dict()`; they may override `metrics()`,
    `summary_part()`, `metadata()`, `tags()` and `notes()`, whose defaults are empty.
    """

    FILE: ClassVar[str]
    # Other files of the artifact folder that MLflow keeps too (beside FILE).
    ATTACHMENTS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The output as the JSON-ready dict written to `FILE`."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """The output from a dict such as `to_dict` returns (what `read` parses from `FILE`)."""
        raise NotImplementedError

    def write(self, artifact_path: str | os.PathLike) -> Path:
        """Writes `FILE` into the artifact folder (created if needed), atomically."""
        return files.write_json(files.artifact_dir(artifact_path) / self.FILE, self.to_dict())

    @classmethod
    def read(cls, artifact_path: str | os.PathLike) -> Self:
        """Reads the output a previous step wrote into `artifact_path`.

        Raises:
            EdgetuneError: the file is missing (the artifact is not this step's output).
        """
        path = Path(artifact_path) / cls.FILE
        if not path.is_file():
            raise EdgetuneError(f"{path}: missing; expected the {cls.__name__} of an earlier step")
        return cls.from_dict(files.read_json(path))

    def metrics(self) -> dict[str, float]:
        """Numbers to log as MLflow metrics of the step's run."""
        return {}

    def summary_part(self) -> dict[str, Any]:
        """The step's share of summary.json (see components/common/summary.py)."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """What the KFP artifact shows in the UI."""
        return {}

    def tags(self) -> dict[str, str]:
        """MLflow tags of the step's run, to search runs by."""
        return {}

    def notes(self) -> list[str]:
        """Lines for the step's log, for the person watching the run."""
        return []
