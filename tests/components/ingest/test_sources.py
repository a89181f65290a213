"""Sources beside the class folder: manifests, label rules, and the quick check before a run."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.ingest.core import ingest
from edgetune.components.ingest.sources import LabelRules, quick_check
from edgetune.errors import EdgetuneError


def labels_by_path(out: Path) -> dict[str, str]:
    rows = dataset_shards.read_columns(out, columns=["path", "label"]).to_pylist()
    return {r["path"]: r["label"] for r in rows}


@pytest.fixture
def memory_images(encode_image):
    """Writes images into fsspec's memory filesystem; removed after the test."""
    memory = fsspec.filesystem("memory")
    written: list[str] = []

    def put(path: str, seed: int) -> str:
        memory.pipe(path, encode_image(seed))
        written.append(path)
        return f"memory://{path}"

    yield put
    for path in written:
        memory.rm(path)


def test_a_csv_manifest_reads_relative_absolute_and_uri_paths(
    tmp_path, encode_image, memory_images
):
    (tmp_path / "imgs").mkdir()
    lines = ["path,label"]
    for i in range(6):
        (tmp_path / "imgs" / f"r{i}.png").write_bytes(encode_image(i))
        lines.append(f"imgs/r{i}.png, cat ")  # relative to the manifest; label stripped
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for i in range(3):
        (elsewhere / f"a{i}.png").write_bytes(encode_image(100 + i))
        lines.append(f"{elsewhere / f'a{i}.png'},dog")
    for i in range(3):
        lines.append(f"{memory_images(f'/manifest-test/m{i}.png', 200 + i)},dog")
    lines.append("imgs/missing.png,dog")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")

    report = ingest(
        str(tmp_path / "data.csv"), tmp_path / "out", min_per_class=3, max_quarantine_fraction=0.1
    )

    labels = labels_by_path(tmp_path / "out")
    assert report.classes == ("cat", "dog") and report.class_counts == {"cat": 6, "dog": 6}
    assert labels["imgs/r0.png"] == "cat" and labels["memory:///manifest-test/m2.png"] == "dog"
    assert report.quarantined == (
        {"file": "imgs/missing.png", "reason": "not found", "kind": "not found"},
    )


def test_a_parquet_manifest_with_label_map_merges_classes(tmp_path, encode_image):
    paths, labels = [], []
    for i, label in enumerate(["3", "three", " Three", "4", "four", "FOUR"] * 2):
        (tmp_path / f"{i}.png").write_bytes(encode_image(i))
        paths.append(f"{i}.png")
        labels.append(label)
    pq.write_table(pa.table({"path": paths, "label": labels}), tmp_path / "m.parquet")
    rules = LabelRules(fold_case=True, label_map={"Three": "3", "four": "4"})

    report = ingest(
        str(tmp_path / "m.parquet"), tmp_path / "out", min_per_class=3, label_rules=rules
    )

    assert report.classes == ("3", "4") and report.class_counts == {"3": 6, "4": 6}
    assert report.settings["labels"]["label_map"] == {"Three": "3", "four": "4"}


def test_without_rules_labels_are_only_stripped():
    rules = LabelRules()
    assert rules.apply("  Cat ") == "Cat" and rules.apply("cat") == "cat"
    assert rules.apply(3) == "3" and rules.apply("  ") is None and rules.apply(None) is None
    assert LabelRules(fold_case=True).apply(" CAT") == "cat"


def test_label_map_refuses_empty_names():
    with pytest.raises(EdgetuneError, match="label_map entry 'x'"):
        LabelRules(label_map={"x": " "})


def test_folder_labels_follow_the_same_rules(image_folder, tmp_path):
    src = image_folder({"Cat": 4, "cat ": 4, "dog": 8})

    report = ingest(str(src), tmp_path / "out", label_rules=LabelRules(fold_case=True))

    assert report.class_counts == {"cat": 8, "dog": 8}


def test_quick_check_counts_files_per_class_without_decoding(image_folder, tmp_path):
    src = image_folder({"a": 5, "b": 6})
    (src / "b" / "junk.png").write_text("counted, not decoded")

    assert quick_check(str(src), min_per_class=5) == {"kind": "folder", "classes": {"a": 5, "b": 7}}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "nope", "not found"),
        (lambda root: _text(root / "loose.png", "x").parent, "no class sub-folders"),
        (lambda root: (root / "a" / "x").mkdir(parents=True) or root, "0 class with images"),
        (lambda root: _folder(root, {"a": 5}), "1 class with images (a)"),
        (lambda root: _folder(root, {"a": 5, "b": 2}), "class 'b' has 2 image files"),
        (lambda root: _write(root / "t.parquet", pa.table({"label": ["a"]})), "no column 'image'"),
        (lambda root: _text(root / "t.csv", "file,label\nx.png,a\n"), "no column 'path'"),
        (lambda root: _text(root / "t.parquet", "not parquet"), "not a readable Parquet"),
        (lambda root: _text(root / "t.txt", "x"), "not a folder, a .parquet file or a .csv"),
    ],
    ids=[
        "missing",
        "no-classes",
        "no-images",
        "one-class",
        "small",
        "columns",
        "csv",
        "corrupt",
        "txt",
    ],
)
def test_quick_check_refuses_with_one_line(tmp_path, make, expected):
    source = make(tmp_path / "root")
    with pytest.raises(EdgetuneError) as error:
        quick_check(str(source), min_per_class=5)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_quick_check_reads_a_manifest_and_a_table(tmp_path):
    _text(tmp_path / "m.csv", "path,label\n" + "".join(f"{i}.png,{i % 2}\n" for i in range(10)))
    table = pa.table({"image": [b"x"] * 4, "label": ["a", "b", "a", "b"]})

    assert quick_check(str(tmp_path / "m.csv"), min_per_class=5)["classes"] == {"0": 5, "1": 5}
    checked = quick_check(str(_write(tmp_path / "t.parquet", table)), min_per_class=2)
    assert checked == {"kind": "parquet", "classes": {"a": 2, "b": 2}}


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            (root / label / f"{i}.png").write_bytes(b"x")
    return root


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_ingest_config_declares_the_label_rules_and_the_pixel_limit():
    from edgetune.components.ingest.core import IngestConfig

    config = IngestConfig(fold_case=True, label_map={"three": "3"}, max_pixels=1000)

    assert config.label_rules().apply(" THREE ") == "3" and config.max_pixels == 1000
    with pytest.raises(EdgetuneError, match="max_pixels"):
        IngestConfig(max_pixels=0)
