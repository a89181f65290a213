"""ingest on tiny folders: what is accepted, what is quarantined and why, and how it splits."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgetune import files
from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.ingest.core import (
    SPLITS,
    IngestStopped,
    assign_splits,
    ingest,
    split_position,
)
from edgetune.errors import EdgetuneError


def read_rows(out: Path) -> list[dict]:
    return dataset_shards.read_columns(out).to_pylist()


def splits_by_path(out: Path) -> dict[str, str]:
    return {row["path"]: row["split"] for row in read_rows(out)}


def quarantine_reasons(report) -> dict[str, str]:
    return {q["file"]: q["reason"] for q in report.quarantined}


def test_writes_one_row_per_image_with_its_bytes_label_and_size(image_folder, tmp_path):
    src = image_folder({"cat": 6, "dog": 7})
    report = ingest(str(src), tmp_path / "out", min_per_class=3)

    table = dataset_shards.read_columns(tmp_path / "out")
    assert table.schema.field("label_index").type == pa.int32()
    assert table.schema.field("image").type == pa.binary()
    rows = table.to_pylist()
    assert len(rows) == 13 and report.classes == ("cat", "dog")
    for row in rows:
        assert row["image"] == (src / row["path"]).read_bytes()
        assert row["label"] == row["path"].split("/")[0]
        assert row["label_index"] == report.classes.index(row["label"])
        assert row["split"] in SPLITS
    assert {row["mode"] for row in rows} == {"L", "RGB"}
    assert report.image_sizes["max_height"] == 14
    assert sorted(report.image_sizes["formats"]) == ["BMP", "JPEG", "PNG"]
    written = json.loads((tmp_path / "out" / files.INGEST_REPORT).read_text())
    assert written == report.to_dict()
    assert sum(c["train"] + c["val"] + c["test"] for c in written["counts"].values()) == 13


def test_bad_files_are_quarantined_by_name_with_their_reason(image_folder, encode_image, tmp_path):
    src = image_folder({"a": 10, "b": 10, "c": 10})
    (src / "a" / "empty.png").write_bytes(b"")
    (src / "a" / "truncated.png").write_bytes(encode_image(7, size=(64, 64))[:-200])
    (src / "b" / "notes.png").write_text("not an image at all")
    (src / "c" / "print.jpg").write_bytes(encode_image(8, mode="CMYK", fmt="JPEG"))
    (src / "c" / "README.txt").write_text("ignored, not an image")
    (src / "c" / ".DS_Store").write_bytes(b"\0")

    report = ingest(str(src), tmp_path / "out", max_quarantine_fraction=0.2)

    reasons = quarantine_reasons(report)
    assert reasons["a/empty.png"] == "empty file (0 bytes)"
    assert "cannot decode" in reasons["a/truncated.png"]
    assert "not an image" in reasons["b/notes.png"]
    assert "c/print.jpg" not in reasons  # a CMYK JPEG is an image like any other
    assert report.n_quarantined == 3 and report.ignored_files == 2
    assert report.skipped == {".DS_Store": 1, "not an image file": 1}
    assert report.quarantined_by_reason == {"empty file": 1, "cannot decode": 1, "not an image": 1}
    assert len(read_rows(tmp_path / "out")) == 31


def test_too_many_bad_files_stop_the_run_after_writing_the_report(image_folder, tmp_path):
    src = image_folder({"a": 9, "b": 9})
    (src / "a" / "empty.png").write_bytes(b"")
    (src / "b" / "junk.png").write_text("junk")

    with pytest.raises(IngestStopped) as error:
        ingest(str(src), tmp_path / "out", max_quarantine_fraction=0.05)

    message = str(error.value)
    assert "2 of 20 images (10.0%) quarantined (empty file 1, not an image 1)" in message
    assert "max_quarantine_fraction=0.05" in message and "\n" not in message
    report_path = tmp_path / "out" / files.INGEST_REPORT
    assert message.endswith(f"report: {report_path}") and error.value.report_path == report_path
    written = json.loads(report_path.read_text())
    assert written["status"] == "stopped"
    assert {q["file"] for q in written["quarantined"]} == {"a/empty.png", "b/junk.png"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [files.INGEST_REPORT]


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (None, "not found"),
        ({}, "no class sub-folders"),
        ({"a": 0, "b": 0}, "hold no images"),
        ({"only": 6}, "only 1 class (only)"),
        ({"a": 6, "b": 2}, "class 'b' has 2 usable images; min_per_class=5"),
    ],
)
def test_unusable_sources_fail_with_one_line_naming_the_cause(
    image_folder, tmp_path, layout, expected
):
    src = tmp_path / "missing" if layout is None else image_folder(layout)

    with pytest.raises(EdgetuneError) as error:
        ingest(str(src), tmp_path / "out")

    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out" / files.DATASET_INDEX).exists()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"max_quarantine_fraction": 1.5}, "max_quarantine_fraction"),
        ({"min_per_class": 0}, "min_per_class"),
    ],
)
def test_bad_settings_are_refused_before_reading(tmp_path, settings, field):
    with pytest.raises(EdgetuneError, match=field.replace("+", r"\+")):
        ingest(str(tmp_path / "never-read"), tmp_path / "out", **settings)


def test_split_is_decided_by_content_and_stays_put_as_the_folder_grows(
    image_folder, add_images, tmp_path
):
    src = image_folder({"a": 20, "b": 20})
    fractions = {"val_fraction": 0.3, "test_fraction": 0.3}
    ingest(str(src), tmp_path / "first", **fractions)
    ingest(str(src), tmp_path / "again", **fractions)
    for label in ("a", "b"):
        add_images(src, label, 15, first=20)
    ingest(str(src), tmp_path / "grown", **fractions)

    first, grown = splits_by_path(tmp_path / "first"), splits_by_path(tmp_path / "grown")
    assert splits_by_path(tmp_path / "again") == first
    assert {path: grown[path] for path in first} == first
    assert len(grown) == 70
    for row in read_rows(tmp_path / "grown"):
        position = split_position(row["sha256"])
        expected = "test" if position < 0.3 else "val" if position < 0.6 else "train"
        assert row["split"] == expected


def test_identical_bytes_land_in_the_same_split(image_folder, tmp_path):
    src = image_folder({"a": 12, "b": 12})
    for i in range(12):
        shutil.copy(src / "a" / "img000.png", src / "a" / f"copy{i}.png")

    report = ingest(str(src), tmp_path / "out")

    rows = [r for r in read_rows(tmp_path / "out") if r["path"].startswith("a/copy")]
    assert len({r["split"] for r in rows}) == 1
    assert report.n_duplicates == 12
    assert report.duplicates[0]["class"] == "a" and len(report.duplicates[0]["files"]) == 13


def test_same_bytes_under_two_labels_are_quarantined_both(image_folder, tmp_path):
    src = image_folder({"a": 30, "b": 30})
    shutil.copy(src / "a" / "img001.jpg", src / "b" / "twin.jpg")

    report = ingest(str(src), tmp_path / "out")

    reasons = quarantine_reasons(report)
    assert reasons == {
        "a/img001.jpg": "same content labelled a and b",
        "b/twin.jpg": reasons["a/img001.jpg"],
    }
    assert {r["path"] for r in read_rows(tmp_path / "out")}.isdisjoint(reasons)
    assert report.label_conflicts[0]["labels"] == ["a", "b"]


def test_fingerprint_follows_content_and_labels(image_folder, encode_image, tmp_path):
    src = image_folder({"a": 8, "b": 8})
    first = ingest(str(src), tmp_path / "1").fingerprint
    assert ingest(str(src), tmp_path / "2").fingerprint == first

    shutil.move(src / "a" / "img000.png", src / "b" / "img000.png")
    relabelled = ingest(str(src), tmp_path / "3").fingerprint
    (src / "b" / "img000.png").write_bytes(encode_image(12345))
    changed = ingest(str(src), tmp_path / "4")

    assert relabelled != first
    assert changed.n_quarantined == 0 and changed.fingerprint != relabelled


def test_small_classes_still_get_a_val_and_a_test_example(image_folder, tmp_path):
    src = image_folder({c: 3 for c in "abcdefgh"})

    report = ingest(str(src), tmp_path / "out", min_per_class=3)

    assert all(report.counts[c] == {"train": 1, "val": 1, "test": 1} for c in report.classes)


def test_an_empty_split_takes_the_image_nearest_its_boundary():
    def sha(position: float) -> str:
        return f"{int(position * 2**64):016x}" + "0" * 48

    contents = {sha(p): "a" for p in (0.5, 0.6, 0.9, 0.95)}

    splits = assign_splits(contents, val_fraction=0.15, test_fraction=0.15)

    assert [splits[sha(p)] for p in (0.5, 0.6, 0.9, 0.95)] == ["test", "val", "train", "train"]


def test_reads_a_parquet_table_with_int_labels(encode_image, tmp_path):
    images = [encode_image(i) for i in range(12)]
    table = pa.table(
        {
            "image": pa.array(images, pa.binary()),
            "label": pa.array([i % 2 for i in range(12)], pa.int64()),
            "name": [f"scan{i}.png" for i in range(12)],
        }
    )
    pq.write_table(table, tmp_path / "table.parquet")

    report = ingest(str(tmp_path / "table.parquet"), tmp_path / "out")

    rows = read_rows(tmp_path / "out")
    assert report.classes == ("0", "1")
    assert {r["path"]: r["label"] for r in rows}["scan3.png"] == "1"
    assert sorted(r["image"] for r in rows) == sorted(images)


def test_a_parquet_table_without_an_image_column_is_refused(tmp_path):
    pq.write_table(pa.table({"pixels": [b"x"], "label": ["a"]}), tmp_path / "t.parquet")

    with pytest.raises(EdgetuneError, match="no column 'image'"):
        ingest(str(tmp_path / "t.parquet"), tmp_path / "out")


def test_reads_an_fsspec_memory_folder(image_folder, tmp_path):
    local = image_folder({"a": 6, "b": 6})
    memory = fsspec.filesystem("memory")
    for path in local.rglob("*.*"):
        memory.pipe(f"/ingest-test/{path.relative_to(local).as_posix()}", path.read_bytes())
    try:
        report = ingest("memory://ingest-test", tmp_path / "out")
    finally:
        memory.rm("/ingest-test", recursive=True)

    assert splits_by_path(tmp_path / "out") == splits_by_path_local(local, tmp_path)
    assert report.source == "memory://ingest-test"


def splits_by_path_local(local: Path, tmp_path: Path) -> dict[str, str]:
    ingest(str(local), tmp_path / "local")
    return splits_by_path(tmp_path / "local")


def test_reports_progress_for_every_image(image_folder, tmp_path):
    src = image_folder({"a": 5, "b": 6})
    calls: list[tuple[int, int]] = []

    ingest(str(src), tmp_path / "out", progress=lambda done, total: calls.append((done, total)))

    assert calls == [(i, 11) for i in range(1, 12)]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_an_image_claiming_billions_of_pixels_is_quarantined_not_decoded(image_folder, tmp_path):
    src = image_folder({"a": 20, "b": 20})
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)  # 3.6 G grey pixels
    bomb = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0"))
    )
    (src / "a" / "bomb.png").write_bytes(bomb + png_chunk(b"IEND", b""))

    report = ingest(str(src), tmp_path / "out")

    reason = quarantine_reasons(report)["a/bomb.png"]
    assert "3600000000 pixels" in reason  # Pillow refuses it from the header, as we would
    assert report.quarantined_by_reason == {"too many pixels": 1}
