"""How long Snakemake takes to plan a PASCAL VOC-size run (the head node's share of a cluster run), and how many jobs.

    python bench/voc_plan.py [--train 10582] [--score 1464] [--val 1449] [--test 1456]

Times `snakemake --dry-run --configfile config/voc2012_nosal.yaml` three times: on an empty folder (the first plan:
downloads, assembly, everything); with the downloads and a VOC-layout tree of that size assembled (tiny
placeholder files: planning reads no image), before the dataset is indexed; and after (with a manifest of
every file, as after the first run, when the plan also checks that no indexed file changed: one stat call
per file). Prints the figures; asserts nothing.
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from wsss.data.manifest import NEW, content_sha256  # noqa: E402
from wsss.data.voc import MANIFEST_FORMAT  # noqa: E402


SPLITS = {"train_aug": "SegmentationClassAug", "train": "SegmentationClass", "val": "SegmentationClass",
          "test": None}  # as config/voc2012_nosal.yaml uses them, with the folder of their masks


def make_tree(workdir: Path, counts: dict[str, int]) -> Path:
    """The downloads (placeholders) and the root assembled from them, as after `prepare_dataset`."""
    (workdir / "resources/downloads").mkdir(parents=True)
    for name in yaml.safe_load((REPO / "config/voc2012_nosal.yaml").read_text())["downloads"]:
        (workdir / "resources/downloads" / name).write_bytes(b"placeholder")
    root = workdir / "resources/voc2012"
    for folder in ("ImageSets/Segmentation", "JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        (root / folder).mkdir(parents=True)
    names = {split: [f"{split}_{index:06d}" for index in range(count)] for split, count in counts.items()}
    names["train"] = names["train_aug"][: counts["train"]]  # scored images are training images
    for split, split_names in names.items():
        (root / f"ImageSets/Segmentation/{split}.txt").write_text("\n".join(split_names) + "\n")
        for name in split_names:
            (root / "JPEGImages" / f"{name}.jpg").write_bytes(name.encode())
            if SPLITS[split]:
                (root / SPLITS[split] / f"{name}.png").write_bytes(name.encode())
    return root


def write_manifest(workdir: Path, root: Path) -> None:
    """A manifest of every file, as index_dataset writes it (content hashes of the placeholders)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            status = path.stat()
            files[path.relative_to(root).as_posix()] = {"size": status.st_size, "mtime_ns": status.st_mtime_ns,
                                                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    splits = {}
    for split in SPLITS:
        names = (root / f"ImageSets/Segmentation/{split}.txt").read_text().split()
        splits[split] = {"names": names, "tags": {name: [0] for name in names} if split == "train_aug" else {}}
    manifest = {"format": MANIFEST_FORMAT, "root": str(root.resolve()), "created_with": NEW,
                "class_names": ["background", "aeroplane"], "mask_dirs": {"train_aug": "SegmentationClassAug"},
                "splits": splits, "files": files}
    manifest["content_sha256"] = content_sha256(manifest)
    path = workdir / "results/voc2012_nosal/dataset/manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))


def dry_run(workdir: Path) -> tuple[float, dict[str, int]]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(REPO / "config/voc2012_nosal.yaml"), "--dry-run", "--quiet", "rules"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    table = (result.stdout + result.stderr).split("Job stats:")[1]
    counts = {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=10582, help="training images (VOC train_aug: 10,582)")
    parser.add_argument("--score", type=int, default=1464, help="scored training images (VOC train: 1,464)")
    parser.add_argument("--val", type=int, default=1449, help="evaluation images (VOC val: 1,449)")
    parser.add_argument("--test", type=int, default=1456, help="test images (VOC test: 1,456)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        print(f"VOC-size plan: {args.train} training images ({args.score} scored), {args.val} evaluation and "
              f"{args.test} test images, config/voc2012_nosal.yaml (16 CAM and 16 pseudo-label shards per experiment)")
        seconds, counts = dry_run(workdir)
        print(f"  on an empty folder: {seconds:.1f} s, {counts['total']} jobs ({counts['download']} downloads, "
              f"{counts['prepare_dataset']} assembly)")
        counts = {"train_aug": args.train, "train": args.score, "val": args.val, "test": args.test}
        root = make_tree(workdir, counts)
        files = sum(1 for path in root.rglob("*") if path.is_file())
        seconds, counts = dry_run(workdir)
        print(f"  assembled, before indexing: {seconds:.1f} s, {counts['total']} jobs")
        for rule, count in counts.items():
            if rule != "total":
                print(f"    {rule:32s} {count}")
        write_manifest(workdir, root)
        seconds, counts = dry_run(workdir)
        print(f"  after indexing ({files} files checked): {seconds:.1f} s, {counts['total']} jobs")


if __name__ == "__main__":
    main()
