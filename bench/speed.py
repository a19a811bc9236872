"""How fast the pipeline's heavy parts run on this machine, each beside its baseline measured in the same run.

    python bench/speed.py [--sizes auto|voc|reduced] [--json out.json]      (make bench)

With a GPU (or --sizes voc) it uses the VOC recipe's sizes (config/voc2012.yaml: VGG-16 at 368 px, batch 8,
with RCA; ResNet-101 DeepLab-v2 at crop 321, batch 10; CAMs of 500 x 375 images at scales 1, 0.5, 1.5, 2 with
flips); on the CPU (or --sizes reduced) the built-in config's (config/config.yaml), so that it ends within
minutes on 2 cores. Figures:

- classifier training images/s (the real training step, RCA's contrast, bank and aggregation included) in
  fp32, bf16 and fp32 with channels-last, as ratios to fp32;
- DeepLab-v2 training iterations/s, the same three;
- CAM extraction images/s: one image a batch (VOC's mixed sizes gave batches of 1 or 2) against full batches,
  and batches in bf16;
- dense-CRF images/s on one core and on every core (a pool of processes), and the all-core rate over
  cores x the one-core rate;
- DeepLab-v2 prediction images/s (`wsss/segmentation/predict.py: class_probabilities`): one scale with the flip in fp32 and
  bf16, the papers' multi-scale scoring (scales 1, 0.5, 0.75, max), and that followed by the CRF on every core;
- the CAM store: bytes per image of float16 gzip HDF5 against float32 `.npy`, and the time to read them from
  the page cache (warm) and from the disk (cold); the same for the alternative that stores each scale's
  stride-8 maps and resizes them on reading (`--store-dir` puts the files on the filesystem to measure);
- with the VOC sizes, the projected time of a whole VOC `rca` run on this machine, stage by stage, from the
  rates above (`project_voc_run`).

The first line names the device and whether it computes bf16 natively (the CPU's avx512_bf16/amx_bf16 flags;
on CUDA, torch.cuda.is_bf16_supported(including_emulation=False)); the bf16 figures repeat the answer, and --json
holds it under "device".

Synthetic inputs (random images; smooth maps for the CRF and the store): the figures measure the
computation, not data loading. Prints a table; asserts nothing.
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from wsss.cams.extract import multiscale_cams, normalise_per_class  # noqa: E402
from wsss.cams.store import CamWriter, open_hdf5, read_cam_entry  # noqa: E402
from wsss.classifier.rca_schedule import refresh_centroids  # noqa: E402
from wsss.classifier.train import make_optimizer as classifier_optimizer  # noqa: E402
from wsss.classifier.train import train_one_epoch  # noqa: E402
from wsss.core.config import load_config, resolve_experiment, section_defaults  # noqa: E402
from wsss.core.guards import FiniteGuard  # noqa: E402
from wsss.core.compute import device_bf16_support, grad_scaler, memory_format  # noqa: E402
from wsss.models.classifier import build_classifier  # noqa: E402
from wsss.models.deeplab import build_deeplab  # noqa: E402
from wsss.pseudo_labels.crf import dense_crf  # noqa: E402
from wsss.segmentation.predict import class_probabilities  # noqa: E402
from wsss.segmentation.train import make_optimizer as deeplab_optimizer  # noqa: E402
from wsss.segmentation.train import training_step  # noqa: E402

os.environ.setdefault("WSSS_NO_PROGRESS", "1")
VARIANTS = {"fp32": {"precision": "fp32", "channels_last": False},
            "bf16": {"precision": "bf16", "channels_last": False},
            "fp32 channels-last": {"precision": "fp32", "channels_last": True}}


def recipe(sizes: str) -> dict:
    """The settings measured: the VOC config's rca experiment, or the built-in config's."""
    config = load_config(REPO / ("config/voc2012.yaml" if sizes == "voc" else "config/config.yaml"))
    resolved = resolve_experiment(config, "rca")
    voc = sizes == "voc"
    return {"classifier": {**resolved["classifier"], "backbone": {**resolved["classifier"]["backbone"], "weights": None}},
            "segmentation": {**resolved["segmentation"],
                             "backbone": {**resolved["segmentation"]["backbone"], "weights": None}},
            "cam": resolved["cam"], "crf": resolved["crf"], "num_classes": 20 if voc else 6,
            "image_size": (375, 500) if voc else (96, 96), "steps": 6 if voc else 3,
            "cam_images": 16 if voc else 32, "crf_images": 8 if voc else 32}


def timed(function, repeats: int) -> float:
    """Seconds per call of `function` (after one warm-up call), the device synchronised."""
    function()
    synchronise()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronise()
    return (time.perf_counter() - started) / repeats


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def classifier_rate(settings: dict, device: torch.device, compute: dict) -> float:
    """Images/s of the classifier's training step with RCA on (contrast, bank, aggregation with centroids)."""
    train = settings["classifier"]
    torch.manual_seed(0)
    model = build_classifier(train, settings["num_classes"]).to(device, memory_format=memory_format(compute))
    optimizer = classifier_optimizer(model, train)
    batch, size = train["batch_size"], train["input_size"]
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(batch, settings["num_classes"], generator=generator) < 0.15).float()
    targets[torch.arange(batch), torch.arange(batch) % settings["num_classes"]] = 1.0
    loader = [(torch.rand(batch, 3, size, size, generator=generator), targets, torch.arange(batch))]
    guard, scaler = FiniteGuard("bench"), grad_scaler(compute, device)
    epoch = max(train["rca"]["contrast_start_epoch"], 1)
    for _ in range(train["rca"]["bank_size"] // batch + 1):  # fill every class's bank for the k-means
        train_one_epoch(model, loader, optimizer, device, epoch, train, guard, None, compute, scaler)
    refresh_centroids(model, train["rca"], 0)
    seconds = timed(lambda: train_one_epoch(model, loader, optimizer, device, epoch, train, guard, None, compute,
                                            scaler), settings["steps"])
    return batch / seconds


def deeplab_rate(settings: dict, device: torch.device, compute: dict) -> float:
    """Iterations/s of DeepLab-v2's training step."""
    seg = settings["segmentation"]
    torch.manual_seed(0)
    model = build_deeplab(seg, settings["num_classes"] + 1).to(device, memory_format=memory_format(compute))
    optimizer = deeplab_optimizer(model, seg)
    crop = seg["crop_size"]
    images = torch.rand(seg["batch_size"], 3, crop, crop)
    labels = torch.randint(0, settings["num_classes"] + 1, (seg["batch_size"], crop, crop))
    guard, scaler = FiniteGuard("bench"), grad_scaler(compute, device)
    step = lambda: training_step(model, model, images, labels, optimizer, scaler, guard, compute, device, "bench")  # noqa: E731
    return 1.0 / timed(step, settings["steps"])


def cam_rates(settings: dict, device: torch.device) -> dict[str, float]:
    """CAM extraction images/s: one image a batch, full batches, full batches in bf16 (the maps of 3 tags kept)."""
    torch.manual_seed(0)
    model = build_classifier(settings["classifier"], settings["num_classes"]).to(device).eval()
    height, width = settings["image_size"]
    count, batch = settings["cam_images"], settings["cam"]["batch_size"]
    images = torch.rand(count, 3, height, width)
    scales, flip = settings["cam"]["scales"], settings["cam"]["flip"]

    def extract(batch_size: int, compute: dict) -> None:
        with torch.no_grad():
            for start in range(0, count, batch_size):
                cams = multiscale_cams(model, images[start:start + batch_size].to(device), scales, flip, compute)
                normalise_per_class(cams[:, :3]).cpu()

    rates = {}
    for name, batch_size, compute in (("1 image a batch", 1, {}), (f"batches of {batch}", batch, {}),
                                      (f"batches of {batch}, bf16", batch, {"precision": "bf16"})):
        rates[name] = count / timed(lambda: extract(batch_size, compute), 1)
    return rates


def papers_scoring() -> dict:
    """The VOC recipe's DeepLab-v2 scoring (the schema's defaults: scales 1, 0.5, 0.75, max fusion, no flip)."""
    segmentation = section_defaults("segmentation")
    return {"scales": tuple(segmentation["eval_scales"]), "flip": segmentation["eval_flip"],
            "fusion": segmentation["eval_fusion"]}


def scoring_name(scoring: dict) -> str:
    scales = "/".join(f"{scale:g}" for scale in scoring["scales"])
    return f"scales {scales} ({scoring['fusion']})" + (" + flip" if scoring["flip"] else "")


def deeplab_prediction_rates(settings: dict, device: torch.device) -> dict[str, float]:
    """Images/s of DeepLab-v2's prediction of full images (batches of 8): one scale with the flip averaged in fp32
    and bf16, and the papers' multi-scale scoring in fp32."""
    torch.manual_seed(0)
    model = build_deeplab(settings["segmentation"], settings["num_classes"] + 1).to(device).eval()
    height, width = settings["image_size"]
    images = torch.rand(8, 3, height, width, device=device)
    single = {"scales": (1.0,), "flip": True, "fusion": "mean"}

    def predict(compute: dict, scoring: dict) -> None:
        with torch.no_grad():
            class_probabilities(model, images, compute, device, **scoring).cpu()

    return {name: len(images) / timed(lambda: predict(compute, scoring), 1)
            for name, compute, scoring in (("fp32", {}, single), ("bf16", {"precision": "bf16"}, single),
                                           (scoring_name(papers_scoring()), {}, papers_scoring()))}


def with_crf(prediction: dict[str, float], crf: dict[str, float]) -> float:
    """Images/s of the papers' scoring followed by the CRF on every core (one after the other, as a bound)."""
    return 1 / (1 / prediction[scoring_name(papers_scoring())] + 1 / crf[max(crf, key=crf.get)])


# PASCAL VOC 2012 with SBD: the images each stage of a VOC run sees (config/voc2012.yaml)
VOC_IMAGES = {"train_aug": 10582, "val": 1449}


def project_voc_run(figures: dict, settings: dict) -> dict[str, float]:
    """Seconds each stage of a whole VOC `rca` run would take at the measured rates, each at its fastest
    measured variant: the classifier's epochs over train_aug, its CAMs, CRF pseudo labels on every core
    (`pseudo_labels.mode: crf`; the saliency mode costs less), the val CAMs for the background threshold,
    DeepLab-v2's iterations, and its val prediction as the papers score it (multi-scale, fp32) with CRF
    post-processing on every core."""
    fastest = {section: max(value for value in figures[section].values()) for section in
               ("classifier training (RCA)", "DeepLab-v2 training", "CAM extraction", "DeepLab-v2 prediction")}
    crf = max(value for key, value in figures["dense CRF"].items() if key != "efficiency")
    train, val = VOC_IMAGES["train_aug"], VOC_IMAGES["val"]
    return {"classifier": settings["classifier"]["epochs"] * train / fastest["classifier training (RCA)"],
            "CAMs (train_aug, val)": (train + val) / fastest["CAM extraction"],
            "CRF pseudo labels": train / crf,
            "DeepLab-v2": settings["segmentation"]["iterations"] / fastest["DeepLab-v2 training"],
            "val prediction + CRF": val / figures["DeepLab-v2 prediction"][scoring_name(papers_scoring())] + val / crf}


def smooth_maps(count: int, channels: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(count, channels, H, W) maps in [0, 1] made of a few Gaussian blobs, like CAMs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    maps = np.zeros((count, channels, height, width), np.float32)
    for index in np.ndindex(count, channels):
        for _ in range(2):
            cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.1, 0.3) * min(height, width)
            maps[index] = np.maximum(maps[index], np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2)))
    return maps


_CRF: dict = {}


def _crf_one(index: int) -> int:
    dense_crf(_CRF["images"][index], _CRF["probabilities"][index], _CRF["settings"])
    return index


def crf_rates(settings: dict) -> dict[str, float]:
    """Dense-CRF images/s (3 labels: background and two tags) on one core and on every core."""
    height, width = settings["image_size"]
    count, cores = settings["crf_images"], os.cpu_count() or 1
    maps = smooth_maps(count, 2, height, width)
    background = (1 - maps.max(1, keepdims=True)) ** 2
    _CRF.update(images=(np.random.default_rng(1).random((count, height, width, 3)) * 255).astype(np.uint8),
                probabilities=np.concatenate([background, maps], 1), settings=settings["crf"])
    torch.set_num_threads(1)
    started = time.perf_counter()
    for index in range(count):
        _crf_one(index)
    one_core = count / (time.perf_counter() - started)
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        started = time.perf_counter()
        list(pool.imap_unordered(_crf_one, [index % count for index in range(count * cores)], chunksize=2))
        all_cores = count * cores / (time.perf_counter() - started)
    return {"1 core": one_core, f"{cores} cores": all_cores, "efficiency": all_cores / (cores * one_core)}


def read_all(path: Path, count: int) -> list:
    """Every image's maps through one open handle, as the pseudo-label and evaluation stages read them."""
    with open_hdf5(path) as handle:
        return [read_cam_entry(handle, f"image_{index}") for index in range(count)]


def per_scale_maps(count: int, channels: int, height: int, width: int, scales: list[float],
                   seed: int = 2) -> list[list[torch.Tensor]]:
    """Per image, each scale's (channels, h, w) stride-8 maps, as the classifier computes them: smooth and >= 0."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        coarse = torch.rand(1, channels, 5, 7, generator=generator)
        images.append([F.interpolate(coarse, size=(-(-round(height * scale) // 8), -(-round(width * scale) // 8)),
                                     mode="bicubic", align_corners=False)[0].clamp(min=0) for scale in scales])
    return images


def full_resolution(scale_maps: list[torch.Tensor], height: int, width: int) -> np.ndarray:
    """What CAM extraction stores from one image's per-scale maps: each resized to the image, summed, normalised."""
    total = sum(F.interpolate(maps[None], size=(height, width), mode="bilinear", align_corners=False)[0]
                for maps in scale_maps)
    return normalise_per_class(total).numpy()


def write_per_scale(path: Path, scale_maps: list[list[torch.Tensor]]) -> None:
    """The alternative store: a group per image, in it each scale's stride-8 maps in float16, uncompressed."""
    with h5py.File(path, "w") as handle:
        for index, maps in enumerate(scale_maps):
            group = handle.create_group(f"image_{index}")
            for position, scale in enumerate(maps):
                group.create_dataset(str(position), data=scale.numpy().astype(np.float16))


def read_per_scale(path: Path, count: int, height: int, width: int) -> list:
    """Every image's maps from the alternative store: its scales resized, summed and normalised on reading."""
    with open_hdf5(path) as handle:
        return [full_resolution([torch.from_numpy(handle[f"image_{index}/{position}"][()].astype(np.float32))
                                 for position in range(len(handle[f"image_{index}"]))], height, width)
                for index in range(count)]


def evict_from_page_cache(folder: Path) -> bool:
    """Drops the folder's files from the page cache, so the next read comes from the disk; False where the OS
    cannot be asked (then the cold figures repeat the warm ones)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in folder.iterdir():
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    return True


def read_seconds(read, folder: Path, cold: bool, repeats: int = 3) -> float:
    """The best of `repeats` reads, each from the page cache (warm) or after evicting the files (cold)."""
    best = float("inf")
    for _ in range(repeats + (not cold)):  # a warm read is first warmed once
        if cold:
            evict_from_page_cache(folder)
        started = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - started)
    return best


def store_figures(settings: dict, folder: str | None = None) -> dict[str, float]:
    """The CAM store (float16, gzip, HDF5) and the per-scale alternative against float32 `.npy` files: bytes per
    image, and read time per image from the page cache (warm) and from the disk (cold), in `folder` (a temporary
    folder there; default the system's): point it at the filesystem the store lives on."""
    height, width = settings["image_size"]
    count, channels = 16, 3
    scale_maps = per_scale_maps(count, channels, height, width, settings["cam"]["scales"])
    torch.set_num_threads(1)  # as a CRF worker reads
    with tempfile.TemporaryDirectory(dir=folder) as folder:
        folder = Path(folder)
        full_maps = [full_resolution(maps, height, width) for maps in scale_maps]
        with CamWriter(folder / "cams.h5") as writer:
            for index, maps in enumerate(full_maps):
                writer.write(f"image_{index}", maps, list(range(channels)))
        write_per_scale(folder / "per_scale.h5", scale_maps)
        for index, maps in enumerate(full_maps):
            np.save(folder / f"image_{index}.npy", maps)
        npy_bytes = sum((folder / f"image_{index}.npy").stat().st_size for index in range(count))
        readers = {"npy": lambda: [np.load(folder / f"image_{index}.npy") for index in range(count)],
                   "hdf5": lambda: read_all(folder / "cams.h5", count),
                   "per-scale": lambda: read_per_scale(folder / "per_scale.h5", count, height, width)}
        reads = {(name, cold): read_seconds(read, folder, cold) / count
                 for name, read in readers.items() for cold in (False, True)}
        figures = {"npy bytes/image": npy_bytes / count, "npy read warm s/image": reads["npy", False],
                   "npy read cold s/image": reads["npy", True]}
        for name, path in (("hdf5", "cams.h5"), ("per-scale", "per_scale.h5")):
            figures |= {f"{name} bytes ratio": (folder / path).stat().st_size / npy_bytes,
                        f"{name} read warm ratio": reads[name, False] / reads["npy", False],
                        f"{name} read cold ratio": reads[name, True] / reads["npy", True]}
    return figures


def bf16_answer(support: dict) -> str:
    """The device's bf16 support (compute.bf16_support) as printed beside the bf16 figures, which depend on it:
    x0.03 to x0.08 of fp32 on an AVX2-only CPU, x1.4 to x1.9 on one with AVX-512 BF16 or AMX."""
    return "native bf16: " + {True: "yes", False: "no", None: "unknown"}[support["native"]]


def section_lines(section: str, values: dict[str, float], unit: str, baseline: str | None,
                  bf16_note: str = "") -> list[str]:
    """A section of the printed table: each figure, its ratio to the baseline, and `bf16_note` beside bf16's."""
    lines = [f"\n{section}"]
    for key, value in values.items():
        ratio = f"  x{value / values[baseline]:.2f}" if baseline and key != baseline and unit else ""
        note = f"  ({bf16_note})" if bf16_note and "bf16" in key else ""
        lines.append(f"  {key:<28} {value:12.4g} {unit}{ratio}{note}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", choices=("auto", "voc", "reduced"), default="auto",
                        help="auto: the VOC recipe's sizes with a GPU, reduced ones without")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--store-dir", help="where the CAM store is measured (default: the system's temporary "
                                            "folder); on a cluster, the filesystem that holds results/")
    args = parser.parse_args()
    if args.store_dir and not Path(args.store_dir).is_dir():
        parser.error(f"--store-dir {args.store_dir}: no such folder")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = args.sizes if args.sizes != "auto" else ("voc" if device.type == "cuda" else "reduced")
    settings = recipe(sizes)
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    bf16 = device_bf16_support(device)
    print(f"device: {name}; {bf16_answer(bf16)} ({bf16['evidence']}); sizes: {sizes}; torch {torch.__version__}")
    figures: dict[str, dict] = {"device": {"name": name, "sizes": sizes, "bf16": bf16}}

    def report(section: str, values: dict[str, float], unit: str, baseline: str | None) -> None:
        figures[section] = values
        print("\n".join(section_lines(section, values, unit, baseline, bf16_answer(bf16))))

    report("classifier training (RCA)",
           {variant: classifier_rate(settings, device, compute) for variant, compute in VARIANTS.items()},
           "images/s", "fp32")
    report("DeepLab-v2 training", {variant: deeplab_rate(settings, device, compute)
                                   for variant, compute in VARIANTS.items()}, "iterations/s", "fp32")
    report("CAM extraction", cam_rates(settings, device), "images/s", "1 image a batch")
    crf = crf_rates(settings)
    report("dense CRF", {key: value for key, value in crf.items() if key != "efficiency"}, "images/s", "1 core")
    print(f"  all cores / (cores x 1 core)  {crf['efficiency']:.2f}")
    figures["dense CRF"]["efficiency"] = crf["efficiency"]
    prediction = deeplab_prediction_rates(settings, device)
    prediction[f"{scoring_name(papers_scoring())}, then CRF on all cores"] = with_crf(prediction, crf)
    report("DeepLab-v2 prediction", prediction, "images/s", "fp32")
    store = store_figures(settings, args.store_dir)
    report("CAM store", store, "", None)
    if sizes == "voc":
        projection = project_voc_run(figures, settings)
        report("projected VOC rca run (fastest variant of each stage)", {**projection, "total": sum(
            projection.values())}, "s", None)
        print(f"  total: {sum(projection.values()) / 3600:.2f} h on this machine")
    else:
        print("\n(the projected VOC run needs the VOC sizes: --sizes voc)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
