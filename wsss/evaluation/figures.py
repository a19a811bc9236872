"""Pictures where they say more than numbers: training curves, threshold sweeps, CAM overlays, label maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..cams.store import open_hdf5, read_cam_entry  # noqa: E402
from ..core.artifacts import atomic_file  # noqa: E402
from ..data.voc import VOCLayout, open_layout, read_label_png, voc_palette  # noqa: E402

PALETTE = voc_palette()


def _save(figure, path: str | Path) -> None:
    try:
        with atomic_file(path) as temporary:
            figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def plot_curves(records: list[dict], x_key: str, y_keys: list[str], title: str, path: str | Path) -> None:
    figure, axes = plt.subplots(1, len(y_keys), figsize=(4 * len(y_keys), 3))
    axes = np.atleast_1d(axes)
    xs = [record[x_key] for record in records]
    for axis, key in zip(axes, y_keys):
        axis.plot(xs, [record[key] for record in records], marker=".")
        axis.set_xlabel(x_key)
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    _save(figure, path)


def plot_threshold_sweep(metrics: dict, path: str | Path) -> None:
    """Seed mIoU against the background threshold: the chosen threshold (its split named) and the oracle."""
    figure, axis = plt.subplots(figsize=(4, 3))
    axis.plot([p["threshold"] for p in metrics["sweep"]], [p["miou"] for p in metrics["sweep"]], marker="o")
    axis.axvline(metrics["threshold"], color="tab:red", linestyle="-",
                 label=f"chosen on {metrics['threshold_chosen_on']}: {metrics['threshold']}")
    axis.axvline(metrics["oracle_threshold"], color="grey", linestyle="--",
                 label=f"best on {metrics['split']} (oracle): {metrics['oracle_threshold']}")
    axis.set_xlabel("background threshold")
    axis.set_ylabel(f"seed mIoU ({metrics['split']})")
    axis.set_title(f"CAM seeds: {metrics['miou']:.3f} at {metrics['threshold']}", fontsize=9)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    _save(figure, path)


def plot_background_tuning(tuning: dict, path: str | Path) -> None:
    """On the val split: seed mIoU per background threshold, and pseudo-label mIoU per bg_power (when swept)."""
    sweeps = [("threshold_sweep", "threshold", "background threshold", "bg_threshold", "seed mIoU")]
    if tuning["bg_power_sweep"]:
        sweeps.append(("bg_power_sweep", "bg_power", "bg_power", "bg_power", "pseudo-label mIoU"))
    figure, axes = plt.subplots(1, len(sweeps), figsize=(4 * len(sweeps), 3), squeeze=False)
    for axis, (key, x, xlabel, chosen, ylabel) in zip(axes[0], sweeps):
        axis.plot([p[x] for p in tuning[key]], [p["miou"] for p in tuning[key]], marker="o")
        axis.axvline(tuning[chosen], color="tab:red", label=f"chosen: {tuning[chosen]}")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(f"{ylabel} ({tuning['split']})")
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    figure.suptitle(f"choices made on {tuning['split']} ({tuning['num_images']} images)", fontsize=9)
    _save(figure, path)


def colourise(label: np.ndarray) -> np.ndarray:
    return PALETTE[label]


def cam_overlays(cams_path: str | Path, dataset: str | Path | VOCLayout, names: list[str], path: str | Path,
                 split: str | None = None) -> None:
    """Per image: the image, the truth (the masks of `split`), and each tagged class's CAM over the image."""
    layout = open_layout(dataset)
    with open_hdf5(cams_path) as handle:
        entries = [(name, *read_cam_entry(handle, name)) for name in names]
    columns = 2 + max((len(tags) for _, _, tags in entries), default=1)
    figure, axes = plt.subplots(len(entries), columns, figsize=(2 * columns, 2 * len(entries)), squeeze=False)
    for row, (name, cams, tags) in zip(axes, entries):
        image = layout.read_image(name)
        row[0].imshow(image)
        row[0].set_title(name, fontsize=7)
        row[1].imshow(colourise(layout.read_mask(name, split)))
        row[1].set_title("truth", fontsize=7)
        for axis, cam, tag in zip(row[2:], cams, tags):
            axis.imshow(image)
            axis.imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axis.set_title(layout.class_names[tag + 1], fontsize=7)
        for axis in row:
            axis.axis("off")
    _save(figure, path)


def label_grid(dataset: str | Path | VOCLayout, columns: dict[str, dict[str, Path]], names: list[str],
               path: str | Path, split: str | None = None, truth: bool = True) -> None:
    """Per image: the image, the truth (the masks of `split`; not with `truth=False`, for a split without masks)
    and one column per labelling (e.g. pseudo labels, predictions)."""
    layout = open_layout(dataset)
    width = 1 + truth + len(columns)
    figure, axes = plt.subplots(len(names), width, figsize=(2 * width, 2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        row[0].imshow(layout.read_image(name))
        row[0].set_title(name, fontsize=7)
        if truth:
            row[1].imshow(colourise(layout.read_mask(name, split)))
            row[1].set_title("truth", fontsize=7)
        for axis, (title, paths) in zip(row[1 + truth:], columns.items()):
            axis.imshow(colourise(read_label_png(paths[name])))
            axis.set_title(title, fontsize=7)
        for axis in row:
            axis.axis("off")
    _save(figure, path)
