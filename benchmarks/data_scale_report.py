"""Section 7's Markdown: the data-scale table, the peak-RSS ratio and how it was measured."""

from __future__ import annotations

from typing import Any

from benchmarks.data_scale import TRAIN_IN_MEMORY_UP_TO


def report_lines(r: dict[str, Any]) -> list[str]:
    """The section as Markdown, for benchmarks/report.py."""
    from benchmarks.report import n, s, table

    def rss(d: dict[str, Any]) -> str:
        return "error" if "error" in d else f"{d['peak_rss_mib']:,.0f} MiB"

    def rate(d: dict[str, Any], key: str) -> str:
        return d.get("error", "")[:60] if "error" in d else n(d[key])

    what = {
        "edgetune": "edgetune ingest + preprocess ({storage})",
        "fit": "one `model.fit` epoch, small CNN, from {storage}, {copies} copies",
        "training_input": "training input alone from {storage}, {copies} copies (last epoch)",
    }
    rate_key = {"edgetune": "images_per_second"}
    rows = []
    for size, row in r["sizes"].items():
        storage = {v: row.get(f"edgetune_{v}", {}).get("storage", v) for v in ("memory", "stream")}
        for kind in ("edgetune", "fit", "training_input"):
            for variant in ("memory", "stream"):
                d = row.get(f"{kind}_{variant}")
                if d is None:
                    continue
                label = what[kind].format(storage=storage[variant], copies=r["copies"])
                rows.append(
                    [
                        n(int(size)),
                        label,
                        rate(d, rate_key.get(kind, "examples_per_second")),
                        rss(d),
                    ]
                )
        if "keras_dir" in row:
            keras = row["keras_dir"]
            rows.append([n(int(size)), "image_dataset_from_directory, 1 epoch",
                         rate(keras, "images_per_second"), rss(keras)])  # fmt: skip
    first = next(iter(r["sizes"].values()))["generated"]
    generated = ", ".join(
        f"{s(row['generated']['seconds'])} for {n(int(size))} files"
        for size, row in r["sizes"].items()
        if "generated" in row
    )
    return [
        *table(["images", "what", "images / s", "peak RSS"], rows),
        "",
        *_flatness(r),
        f"Synthetic folders of 10 classes, mixed sizes (48..320 px) and modes (RGB and CMYK "
        f"JPEG; grey, RGBA, palette and 16-bit PNG), {first['bytes'] / first['files'] / 1024:.1f} "
        f"KiB a file; to {r['image_size'][0]}x{r['image_size'][1]}x{r['image_size'][2]}. Each "
        "line is a fresh process (peak RSS is its own `ru_maxrss`, TensorFlow included); "
        "TensorFlow is imported before the clock starts. edgetune's rate counts every image "
        "once through ingest (read, hash, full decode, checks, Parquet shards) and preprocess "
        "(decode, resize, write); the `model.fit` and training-input rates count examples "
        "(originals and augmented copies). Files are written from a pool of 100 encoded "
        "pictures per class, each file with its own metadata block (distinct bytes, pooled "
        f"pixels); generation took {generated}. The small CNN has {_params(r)} parameters: "
        "the epoch measures the data path feeding `model.fit`. Training from in-memory "
        f"arrays is measured up to {n(TRAIN_IN_MEMORY_UP_TO)} images only (at 20,000 its "
        "training input peaked at 13.9 GB, results/20261130T144108Z.json).",
    ]


def _params(r: dict[str, Any]) -> str:
    fits = [row[k] for row in r["sizes"].values() for k in row if k.startswith("fit_")]
    return next((f"{d['params']:,}" for d in fits if "params" in d), "n/a")


def _flatness(r: dict[str, Any]) -> list[str]:
    """One line: the streamed path's peak RSS at the largest size over the one ten times smaller."""
    sizes = sorted(int(k) for k in r["sizes"])
    pairs = [(a, b) for a in sizes for b in sizes if b == 10 * a]
    if not pairs:
        return []
    small, large = pairs[-1]
    parts = []
    for key, name in (("edgetune_stream", "ingest + preprocess"), ("fit_stream", "`model.fit`")):
        a, b = r["sizes"][str(small)].get(key, {}), r["sizes"][str(large)].get(key, {})
        if "peak_rss_mib" in a and "peak_rss_mib" in b:
            ratio = b["peak_rss_mib"] / a["peak_rss_mib"]
            parts.append(f"{name} {ratio:.2f}x")
    if not parts:
        return []
    return [
        f"Peak RSS of the streamed path, {large:,} over {small:,} images: {', '.join(parts)}.",
        "",
    ]
