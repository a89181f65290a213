"""convert's output: convert_report.json beside the int8 file, typed for the wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgetune import files
from edgetune.components.common.outputs import StepOutput

TFLITE_STAGES = ("tflite_float", "tflite_int8")


@dataclass(frozen=True)
class ConvertReport(StepOutput):
    """Both files' LiteRT checks and the int8/float size ratios (what `core.convert` returns)."""

    FILE: ClassVar[str] = files.CONVERT_REPORT

    values: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The report's values, as written to convert_report.json."""
        return dict(self.values)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvertReport:
        """The report from convert_report.json's content."""
        return cls(values=dict(d))

    def sizes(self, stage: str) -> dict[str, int]:
        """A file's size and gzipped size: what summary.json and the artifact show."""
        return {k: self.values[stage][k] for k in ("size_bytes", "gzip_bytes")}

    def metrics(self) -> dict[str, float]:
        """The int8/float size ratios and each file's size and gzipped size."""
        ratios = {k: self.values[k] for k in ("int8_to_float", "int8_gzip_to_float")}
        sizes = {f"{s}_{k}": v for s in TFLITE_STAGES for k, v in self.sizes(s).items()}
        return {**ratios, **sizes}

    def summary_part(self) -> dict[str, Any]:
        """Each .tflite file's size and gzipped size under `stages` in summary.json."""
        return {"stages": {stage: self.sizes(stage) for stage in TFLITE_STAGES}}
