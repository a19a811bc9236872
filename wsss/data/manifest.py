"""The dataset manifest: the splits a run uses, checked once and content-hashed, before any stage reads them.

The `index_dataset` rule writes it (`build_manifest`). It records, for every split the run uses, the
image names and tags, and for every file (image, mask, saliency map) its size, modification time,
sha256 and image size. Building it is where bad data is caught early, each error naming the file: an
empty or missing split list, a name listed twice, a missing, truncated or undecodable image, a mask
whose size differs from its image or with values outside the classes.

Stages then read the dataset through a layout opened with the manifest (`voc.open_layout`; the manifest's
format and reader, `voc.MANIFEST_FORMAT` and `voc.read_manifest`, live with the layout, so that reading a
dataset never needs this module, which builds the manifest from a layout's files), which checks each file
against its recorded hash, and the resume fingerprints use `content_sha256`
(everything the stages see: names, tags, file contents). When a file changes in place, the
workflow notices before running anything: `index_check` (called while Snakemake builds the DAG,
stat calls only, no torch) returns another value, the index job's params change, and the dataset is
re-indexed and everything downstream recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..core.artifacts import ArtifactError, write_text
from .voc import (DEFAULT_MASKS, MANIFEST_FORMAT, VOCLayout, check_label_values, decode_image, read_class_list,
                  read_manifest, read_name_list, tags_from_label)

NEW = "new"


def _stat(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def inspect_file(task: tuple[str, str, str, int]) -> dict:
    """Check and hash one file; `task` is (root, relative path, kind, number of classes).

    kind "image": decodes fully (a truncated JPEG fails here); "mask": palette/grey PNG with class
    values or 255, its tags; "saliency": grey-level PNG. Returns size, mtime_ns, sha256, shape (H, W)
    and, for a mask, the foreground classes it shows.
    """
    root, relative, kind, num_classes = task
    path = Path(root) / relative
    try:
        data = path.read_bytes()
        size, mtime_ns = _stat(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist") from None
    array = decode_image(data, path, {"image": "RGB", "mask": "label", "saliency": "L"}[kind])
    record = {"size": size, "mtime_ns": mtime_ns, "sha256": hashlib.sha256(data).hexdigest(),
              "shape": list(array.shape[:2])}
    if kind == "mask":
        check_label_values(array, path, num_classes)
        record["tags"] = tags_from_label(array, num_classes - 1)
    return record


def _split_entries(layout, split: str) -> tuple[list[str], Path | None]:
    """A split's names (checked: the list exists, is not empty, names no image twice) and its class list."""
    names = read_name_list(layout.split_file(split))
    if not names:
        raise ArtifactError(f"split list {layout.split_file(split)} is empty: split {split!r} has no images")
    class_list = layout.class_list_file(split)
    return names, (class_list if class_list.exists() else None)


def split_spec(spec: dict | None = None) -> dict:
    """What a split is indexed with: `masks` (their folder), `tags` (needed: from its class list, else its masks),
    `require_masks` (it is scored or trained on against them), `subset_of` (a split that must hold all its images),
    `disjoint_from` (splits that must share no image with it: a held-out split)."""
    return {"masks": DEFAULT_MASKS, "tags": True, "require_masks": False, "subset_of": None, "disjoint_from": [],
            **(spec or {})}


def build_manifest(root: str | os.PathLike, splits: dict[str, dict] | list[str], created_with: str = NEW,
                   workers: int = 1, progress=None) -> dict:
    """Check every file of `splits` under `root` and record it; raise ArtifactError naming the first bad file.

    `splits`: {split: spec} (see `split_spec`), or a list of split names with the default spec.
    """
    root = Path(root)
    specs = {split: split_spec(spec) for split, spec in
             (splits.items() if isinstance(splits, dict) else ((split, None) for split in splits))}
    mask_dirs = {split: spec["masks"] for split, spec in specs.items() if spec["masks"] != DEFAULT_MASKS}
    layout = VOCLayout(root, mask_dirs=mask_dirs)
    class_names = list(layout.class_names)
    names_of = {split: _split_entries(layout, split) for split in specs}
    tasks = {}
    for split, (names, _) in names_of.items():
        for name in names:
            tasks.setdefault(layout.image_path(name), "image")
            for path, kind in ((layout.label_path(name, split), "mask"), (layout.saliency_path(name), "saliency")):
                if path.exists():
                    tasks.setdefault(path, kind)
    jobs = [(str(root), path.relative_to(root).as_posix(), kind, len(class_names)) for path, kind in tasks.items()]
    records = _inspect_all(jobs, workers, progress)
    files = {relative: record for (_, relative, _, _), record in zip(jobs, records)}
    for path in (root / "classes.txt", root / "dataset.json"):
        if path.exists():
            files[path.relative_to(root).as_posix()] = _plain_record(path)

    def record_of(path: Path) -> dict | None:
        return files.get(path.relative_to(root).as_posix())

    split_records = {}
    for split, (names, class_list) in names_of.items():
        spec = specs[split]
        files[layout.split_file(split).relative_to(root).as_posix()] = _plain_record(layout.split_file(split))
        if spec["subset_of"] is not None:
            superset = set(names_of[spec["subset_of"]][0])
            outside = [name for name in names if name not in superset]
            if outside:
                raise ArtifactError(f"split {split!r} ({layout.split_file(split)}) has {len(outside)} images that are "
                                    f"not in split {spec['subset_of']!r}, e.g. {outside[0]}")
        for other in spec["disjoint_from"]:
            shared = sorted(set(names) & set(names_of[other][0])) if other in names_of else []
            if shared:
                raise ArtifactError(f"split {split!r} ({layout.split_file(split)}) shares {len(shared)} images with "
                                    f"split {other!r}, e.g. {shared[0]}: a held-out split must not")
        tags = {}
        if class_list is not None:
            files[class_list.relative_to(root).as_posix()] = _plain_record(class_list)
            listed = read_class_list(class_list, len(class_names) - 1)
            missing = [name for name in names if name not in listed]
            if missing and spec["tags"]:
                raise ArtifactError(f"{class_list}: no tags for {len(missing)} images of split {split!r}, "
                                    f"e.g. {missing[0]}")
            tags = {name: listed[name] for name in names if name in listed}
        elif spec["tags"]:
            for name in names:
                mask = record_of(layout.label_path(name, split))
                if mask is None:
                    raise ArtifactError(f"split {split!r} has no class list ({layout.class_list_file(split)}) and "
                                        f"{layout.label_path(name, split)} does not exist to derive the tags from")
                tags[name] = mask["tags"]
        for name in names:
            image = record_of(layout.image_path(name))
            if spec["require_masks"] and not layout.label_path(name, split).exists():
                raise ArtifactError(f"{layout.label_path(name, split)} does not exist: split {split!r} is scored or "
                                    f"trained on against its masks")
            for path in (layout.label_path(name, split), layout.saliency_path(name)):
                other = record_of(path) if path.exists() else None
                if other is not None and other["shape"] != image["shape"]:
                    raise ArtifactError(f"{path}: size {other['shape'][1]}x{other['shape'][0]} differs from its "
                                        f"image {layout.image_path(name)} ({image['shape'][1]}x{image['shape'][0]})")
        split_records[split] = {"names": names, "tags": tags}
    manifest = {"format": MANIFEST_FORMAT, "root": str(root.resolve()), "created_with": created_with,
                "class_names": class_names, "mask_dirs": mask_dirs, "splits": split_records, "files": files}
    manifest["content_sha256"] = content_sha256(manifest)
    return manifest


def _plain_record(path: Path) -> dict:
    data = path.read_bytes()
    size, mtime_ns = _stat(path)
    return {"size": size, "mtime_ns": mtime_ns, "sha256": hashlib.sha256(data).hexdigest()}


def _inspect_all(jobs: list, workers: int, progress) -> list[dict]:
    if workers > 1 and len(jobs) > 64:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.imap(inspect_file, jobs, chunksize=32)
            return list(progress(results, total=len(jobs)) if progress else results)
    return [inspect_file(job) for job in (progress(jobs) if progress else jobs)]


def content_sha256(manifest: dict) -> str:
    """A hash of what the stages see (class names, split names and tags, file contents); not of where the
    files lie or when they were written."""
    content = {"class_names": manifest["class_names"], "mask_dirs": manifest.get("mask_dirs", {}),
               "splits": manifest["splits"],
               "files": {name: record["sha256"] for name, record in sorted(manifest["files"].items())}}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def write_manifest(manifest: dict, path: str | os.PathLike) -> None:
    write_text(path, json.dumps(manifest, separators=(",", ":"), sort_keys=True) + "\n")


def first_change(manifest: dict, root: str | os.PathLike) -> str | None:
    """The first recorded file whose size or modification time differs on disk (or that is gone); None if none."""
    root = Path(root)
    for relative, record in manifest["files"].items():
        path = root / relative
        try:
            now = _stat(path)
        except FileNotFoundError:
            return f"{path} was removed"
        if now != (record["size"], record["mtime_ns"]):
            return f"{path} changed (size {now[0]}, mtime_ns {now[1]})"
    return None


def index_check(manifest_path: str | os.PathLike, root: str | os.PathLike) -> str:
    """The `index_dataset` rule's params value: unchanged while the indexed files are unchanged.

    The manifest stores the value it was built with; this returns that value as long as every file
    has its recorded size and mtime, and a value naming the first changed file otherwise, so that
    Snakemake sees changed params and re-indexes the dataset (and recomputes everything downstream).
    """
    manifest_path, root = Path(manifest_path), Path(root)
    if not manifest_path.is_file():
        return NEW
    try:
        manifest = read_manifest(manifest_path)
    except ArtifactError as error:
        return f"unreadable manifest: {error}"
    change = first_change(manifest, root)  # files are compared where they lie now: a moved project reruns nothing
    return manifest["created_with"] if change is None else f"changed since indexed: {change}"
