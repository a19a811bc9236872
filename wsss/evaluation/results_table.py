"""Stage: gather every experiment's metrics into results/benchmark.csv and a Markdown table, each row's provenance
into results/provenance.csv, and the configuration the run resolved into results/config.yaml."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..core.artifacts import read_json, write_text

# column -> the mechanism figure it shows (built-in dataset only: wsss/evaluation/mechanism.py; empty elsewhere)
MECHANISM_FIGURES = {"body_recall": "body_recall", "marking_recall": "marking_recall",
                     "large_body_recall": "large_body_recall", "large_marking_recall": "large_marking_recall",
                     "bg_fpr": "background_fpr"}
MECHANISM_COLUMNS = tuple(MECHANISM_FIGURES)
COLUMNS = ("dataset", "experiment", "stage", "split", "role", "miou", "pixel_accuracy", "fg_recall", "fg_precision",
           *MECHANISM_COLUMNS, "num_images", "detail")
ROLE_LABELS = {"train": "train", "score": "train", "val": "val (tuning)", "test": "test (held out)"}
STAGE_ORDER = {"cam": 0, "cam_no_aggregation": 1, "pseudo_label": 2, "segmentation": 3}


def _rounded(value) -> float | str:
    return "" if value is None else round(value, 4)


def split_role_labels(roles: dict[str, str | None]) -> dict[str, str]:
    """{split: its role as the table names it} from `rules.split_roles`'s {role: split}."""
    return {split: ROLE_LABELS[role] for role, split in roles.items() if split is not None}


def choices_detail(metrics: dict) -> str:
    """Which value each choice behind a row took, and on which split it was made."""
    if metrics["stage"] in ("cam", "cam_no_aggregation"):
        text = (f"threshold {metrics['threshold']} chosen on {metrics['threshold_chosen_on']}; oracle (best on "
                f"{metrics['split']}'s masks) {metrics['oracle_miou']:.4f} at {metrics['oracle_threshold']}")
        if "aggregation_epochs" in metrics:
            epochs = metrics["aggregation_epochs"]
            text += f"; aggregate zeroed at inference (on in {epochs['on']} of {epochs['of']} training epochs)"
        return text + attention_detail(metrics.get("attention"))
    if "bg_power" in metrics:
        source = "fixed in config" if metrics["bg_power_chosen_on"] == "config" else \
            f"chosen on {metrics['bg_power_chosen_on']}"
        return f"bg_power {metrics['bg_power']} {source}"
    if metrics["stage"] == "segmentation" and "multi_scale" in metrics:
        return scoring_detail(metrics)
    return ""


def attention_detail(attention: dict | None) -> str:
    """Where the trained aggregation looks (`attention.measure_attention`'s figures), for the ablated row."""
    if not attention or not attention["ready"]:
        return ""
    body = attention["body"]
    return (f"; body cells' attention on their class's centroids {body['own_class_attention']:.3f} (uniform "
            f"{body['uniform_attention']:.3f})")


def scoring_detail(metrics: dict) -> str:
    """How a DeepLab-v2 row was predicted: scales, flip, fusion, CRF."""
    multi_scale = metrics["multi_scale"]
    scales = "/".join(f"{scale:g}" for scale in multi_scale["scales"])
    text = f"scales {scales}" + (" + flip" if multi_scale["flip"] else "")
    if len(multi_scale["scales"]) > 1 or multi_scale["flip"]:
        text += f" ({multi_scale['fusion']})"
    text += ", CRF" if metrics.get("crf_post_processing") else ", no CRF"
    return text + (f"; from {metrics['starting_weights']}" if metrics.get("starting_weights") else "")


def mechanism_columns(figures: dict | None) -> dict:
    """The mechanism columns of a row from its figures (`mechanism.measure_mechanism`'s section); empty without."""
    figures = figures or {}
    return {column: _rounded(figures.get(figure)) for column, figure in MECHANISM_FIGURES.items()}


def mechanism_detail(figures: dict | None) -> str:
    """Where the seeds' part recalls were measured: the background rate, and the threshold found on val for it."""
    if not figures or "threshold" not in figures:
        return ""
    return (f"parts at background FPR {figures['target_background_fpr']}: threshold {figures['threshold']:.4f} found "
            f"on {figures['threshold_chosen_on']} ({figures['val_background_fpr']:.3f} there)")


def metrics_row(dataset: str, experiment: str, metrics: dict, roles: dict[str, str] | None = None) -> dict:
    """One row of the table; `roles`: {split: role label} (`split_role_labels`). The mechanism columns come from
    `metrics["mechanism"]` where it is set (`with_mechanism`)."""
    details = [choices_detail(metrics), mechanism_detail(metrics.get("mechanism"))]
    if metrics.get("ignored_fraction", 0) > 0:
        details.append(f"{100 * metrics['ignored_fraction']:.1f}% ignored; labelled-pixel mIoU "
                       f"{metrics['labelled_miou']:.4f}")
    return {"dataset": dataset, "experiment": experiment, "stage": metrics["stage"], "split": metrics["split"],
            "role": (roles or {}).get(metrics["split"], ""),
            "miou": round(metrics["miou"], 4), "pixel_accuracy": round(metrics["pixel_accuracy"], 4),
            "fg_recall": _rounded(metrics.get("foreground_recall")),
            "fg_precision": _rounded(metrics.get("foreground_precision")),
            **mechanism_columns(metrics.get("mechanism")),
            "num_images": metrics["num_images"], "detail": "; ".join(detail for detail in details if detail)}


def read_metrics(metrics_files: dict[str, list[str | Path]]) -> dict[str, dict[str, dict]]:
    """{experiment: {metrics json: its metrics}} from {experiment: [metrics json, ...]}."""
    return {experiment: {str(path): read_json(path) for path in paths} for experiment, paths in metrics_files.items()}


def read_mechanism(mechanism_files: dict[str, list[str | Path]]) -> dict[str, dict[str, dict]]:
    """{experiment: {stage: its mechanism figures}} from {experiment: [mechanism json]} (`evaluate_mechanism`'s,
    whose sections are named by the stage they describe)."""
    figures: dict[str, dict[str, dict]] = {}
    for experiment, paths in mechanism_files.items():
        for path in paths:
            record = read_json(path)
            figures.setdefault(experiment, {}).update({stage: record[stage] for stage in ("cam", "pseudo_label")})
    return figures


def with_mechanism(metrics: dict[str, dict[str, dict]], mechanism: dict[str, dict[str, dict]]
                   ) -> dict[str, dict[str, dict]]:
    """`read_metrics`'s records with each stage's mechanism figures under "mechanism" where there are some."""
    return {experiment: {path: ({**record, "mechanism": mechanism[experiment][record["stage"]]}
                                if record["stage"] in mechanism.get(experiment, {}) else record)
                         for path, record in records.items()}
            for experiment, records in metrics.items()}


def in_table_order(rows: list[dict], experiments: list[str]) -> list[dict]:
    """Rows ordered by experiment (as `experiments` lists them), then stage (a stage's rows keep their order)."""
    return sorted(rows, key=lambda row: (experiments.index(row["experiment"]), STAGE_ORDER[row["stage"]]))


def collect_rows(dataset: str, metrics: dict[str, dict[str, dict]], roles: dict[str, str] | None = None) -> list[dict]:
    """Rows from `read_metrics`'s {experiment: {path: metrics}}, ordered by experiment then stage."""
    rows = [metrics_row(dataset, experiment, record, roles) for experiment, records in metrics.items()
            for record in records.values()]
    return in_table_order(rows, list(metrics))


def read_timings(benchmark_dir: str | Path) -> list[tuple[str, float]]:
    """(job, seconds) from Snakemake benchmark files (TSV with a header line and an `s` column)."""
    timings = []
    for path in sorted(Path(benchmark_dir).glob("*.tsv")):
        with open(path) as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        if records:
            timings.append((path.stem, float(records[-1]["s"])))
    return timings


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], columns) -> str:
    """`rows` as CSV text with a header line (quoting as the csv module does)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


PAPER = ("Zhou, Zhang, Zhao, Li: Regional Semantic Contrast and Aggregation for Weakly Supervised Semantic "
         "Segmentation, CVPR 2022 (arXiv 2203.09653)")
# The paper's numbers (mIoU) by dataset source and (experiment, stage, split): `rca` runs the EPS recipe
# (saliency-guided pseudo labels), `rca_oaa` the OAA+ one, as the paper's two variants. Its DeepLab-v2 rows
# follow EPS: ResNet-101 from DeepLab's COCO-pretrained weights, scored by deeplab-pytorch at scales 1.0, 0.5
# and 0.75 (max) with DeepLab's CRF (docs/method.md). The paper gives no seed (CAM) mIoU of its own recipe.
_PAPER_DEEPLAB = "DeepLab-v2 from COCO weights, scales 1/0.5/0.75 (max), CRF"  # EPS's, which RCA follows on VOC
PUBLISHED = {
    "voc2012": {("rca", "pseudo_label", "train"): (0.741, "RCA + EPS (saliency), pseudo masks on VOC train"),
                ("rca", "segmentation", "val"): (0.722, f"RCA + EPS (saliency); {_PAPER_DEEPLAB}"),
                ("rca", "segmentation", "test"): (0.728, f"RCA + EPS (saliency); {_PAPER_DEEPLAB}; evaluation server"),
                ("rca_oaa", "segmentation", "val"): (0.711, f"RCA + OAA+ (saliency); {_PAPER_DEEPLAB}"),
                ("rca_oaa", "segmentation", "test"): (0.716, f"RCA + OAA+ (saliency); {_PAPER_DEEPLAB}; evaluation "
                                                             f"server")},
    "coco2014": {("rca", "segmentation", "val"): (0.368, "RCA + EPS (saliency)"),
                 ("rca_oaa", "segmentation", "val"): (0.357, "RCA + OAA+ (saliency)")},
}


def published_rows(source: str, rows: list[dict]) -> list[dict]:
    """The paper's number beside each measured row that has one (none for other datasets), with how each was
    made: the paper's recipe, and the measured row's choices and scoring (its `detail`)."""
    published = PUBLISHED.get(source, {})
    measured = {(row["experiment"], row["stage"], row["split"]): row for row in rows}
    return [{"experiment": key[0], "stage": key[1], "split": key[2],
             "measured_miou": measured[key]["miou"] if key in measured else "not run",
             "measured_as": measured[key]["detail"] if key in measured else "",
             "published_miou": value, "published_as": label} for key, (value, label) in published.items()]


TABLE_INTRO = """\
mIoU of the CAM seeds and the pseudo labels on the train split's masks (the images they are made for), and of
DeepLab-v2 on the val split and, where it is labelled, on the held-out test split. `role` says what each split
is for: every choice (the seeds' background threshold, a bg_power 'val') is made on val, so a val row is a
tuning figure; a test row was never looked at while tuning. `detail` names each choice and the split it was
made on; the seeds' oracle (the threshold best on the train masks themselves) sits beside them.
fg_recall: share of object pixels labelled with their class (low: partial masks); fg_precision: share of
pixels given a class that are of it (low: spill-over).
On the built-in dataset, body_recall and marking_recall: the share of the objects' body pixels, and of their class
marking's, labelled with their class (large_*: objects above mechanism.large_object_area of the image); bg_fpr:
the share of background pixels given a class. The seeds' (cam rows) are measured at the background threshold
whose rate on val is mechanism.background_fpr, not at the row's threshold; the pseudo labels' as they are.
`cam_no_aggregation`: the CAMs of the same classifier with RCA's aggregate zeroed at inference.
"""


def write_benchmark(rows: list[dict], csv_path: str | Path, markdown_path: str | Path,
                    timings: dict[str, list[tuple[str, float]]] | None = None, source: str = "") -> None:
    write_text(csv_path, csv_text(rows, COLUMNS))
    text = "# Benchmark\n\n" + TABLE_INTRO + "\n" + markdown_table(rows)
    published = published_rows(source, rows)
    if published:
        text += (f"\n## Published numbers\n\nFrom {PAPER}; DeepLab-v2 with ResNet-101 as here. Each side says how "
                 "it was made: the paper's rows use saliency maps and start DeepLab-v2 from COCO weights, so a "
                 "saliency-free run or one from ImageNet weights is not the same recipe. The test split is scored "
                 "only by the VOC evaluation server.\n\n"
                 + markdown_table(published, ("experiment", "stage", "split", "measured_miou", "measured_as",
                                              "published_miou", "published_as")))
    if timings:
        timing_rows = [{"experiment": experiment, "job": job, "seconds": round(seconds, 1)}
                       for experiment, jobs in timings.items() for job, seconds in jobs]
        if timing_rows:
            text += "\n## Wall time per job\n\n" + markdown_table(timing_rows, ("experiment", "job", "seconds"))
    write_text(markdown_path, text)


PROVENANCE_COLUMNS = ("dataset", "experiment", "stage", "split", "commit", "config_sha256", "settings_sha256",
                      "device", "trained_on", "date", "python", "torch", "torchvision", "numpy", "snakemake",
                      "pydensecrf2")


def provenance_rows(dataset: str, metrics: dict[str, dict[str, dict]], histories: dict[tuple[str, str], str],
                    config_sha256: str) -> list[dict]:
    """Per row of the table (`metrics` as for `collect_rows`): what the job that scored it recorded (commit,
    settings hash, packages, device, date), and the device of the training behind it (`histories`:
    (experiment, stage) -> training history)."""
    rows = []
    for experiment, records in metrics.items():
        for path, scored in records.items():
            record = scored.get("run", {}).get("provenance")
            if record is None:
                raise ValueError(f"{path} records no provenance (written by older code): rerun its job")
            trained = histories.get((experiment, "segmentation" if scored["stage"] == "segmentation"
                                     else "classifier"))
            trained_on = read_json(trained)["run"]["provenance"]["device"] if trained else ""
            rows.append({"dataset": dataset, "experiment": experiment, "stage": scored["stage"],
                         "split": scored["split"], "commit": record["commit"], "config_sha256": config_sha256,
                         "settings_sha256": record["settings_sha256"], "device": record["device"],
                         "trained_on": trained_on, "date": record["date"],
                         **{package: record["packages"].get(package, "") for package in PROVENANCE_COLUMNS[10:]}})
    return in_table_order(rows, list(metrics))


def write_provenance(rows: list[dict], path: str | Path) -> None:
    write_text(path, csv_text(rows, PROVENANCE_COLUMNS))
