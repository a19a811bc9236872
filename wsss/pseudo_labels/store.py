"""Where the pseudo labels are kept: shards of PNGs with their list, and the label index gathered from them.

A shard (`make.make_pseudo_labels` writes one) is a folder of PNGs with `labels.sha256` (sha256sum's format)
listing them. A label index ("NAME PATH SHA256" lines, paths relative to the index) gathers the shards for
DeepLab-v2, or indexes any label maps (the true masks of the oracle row). Whoever reads labels through it
checks each file's hash, and a pseudo-label shard found changed (a PNG deleted or replaced) is removed, with
the index gathered from it, so that the next run recomputes both.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.artifacts import ArtifactError, file_sha256, invalidate, write_lines

SHARD_LIST = "labels.sha256"


def read_shard(shard_dir: str | Path) -> dict[str, tuple[Path, str]]:
    """{name: (PNG path, sha256)} of a pseudo-label shard, checked against its list; a shard whose PNGs
    were removed or changed is removed (the next run recomputes it) and ArtifactError raised."""
    shard_dir = Path(shard_dir)
    listing = shard_dir / SHARD_LIST
    if not listing.is_file():
        raise invalidate(shard_dir, f"pseudo-label shard without its list {SHARD_LIST}")
    labels = {}
    for line in listing.read_text().splitlines():
        digest, filename = line.split("  ", 1)
        path = shard_dir / filename
        if not path.is_file() or file_sha256(path) != digest:
            state = "was removed" if not path.is_file() else "changed"
            raise invalidate(shard_dir, f"pseudo label {path} {state} after the shard was written")
        labels[Path(filename).stem] = (path, digest)
    return labels


def write_index(labels: dict[str, tuple[Path, str]], out_path: str | Path) -> int:
    """Write a label index: "NAME PATH SHA256" a line, paths relative to the index."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    base = out_path.parent.resolve()
    write_lines(out_path, [f"{name} {os.path.relpath(Path(path).resolve(), base)} {digest}"
                           for name, (path, digest) in labels.items()])
    return len(labels)


def write_label_index(shard_dirs: list[str | Path], out_path: str | Path) -> int:
    """Gather the pseudo-label shard directories into one index (each shard checked)."""
    return write_index({name: entry for shard_dir in shard_dirs for name, entry in read_shard(shard_dir).items()},
                       out_path)


def read_label_index(path: str | Path, verify: bool = True) -> dict[str, Path]:
    """{name: label PNG path} from a label index; with `verify`, each file's hash is checked (a changed
    pseudo-label shard is removed with the index, for the next run to recompute both)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"label index {path} does not exist")
    index = {}
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) != 3:
            raise ArtifactError(f"{path}:{line_number}: expected 'NAME PATH SHA256', got {line.strip()!r}")
        name, label_path, digest = fields[0], path.parent / fields[1], fields[2]
        if verify and (not label_path.is_file() or file_sha256(label_path) != digest):
            state = "does not exist" if not label_path.is_file() else "changed"
            if (label_path.parent / SHARD_LIST).is_file():
                raise invalidate(label_path.parent, f"pseudo label {label_path} {state} after the shard was written",
                                 gathered=(path,))
            raise ArtifactError(f"{label_path} (listed in {path}) {state} since the index was written")
        index[name] = label_path
    return index
