"""CAM storage in HDF5 (h5py only, no torch, so CRF worker processes can import it cheaply).

One HDF5 file per shard; in it one dataset per image, named by the image, holding the (K, H, W)
float16 CAMs of the image's K tagged classes at image resolution, each normalised to [0, 1], chunked
one class a chunk and gzip-compressed, with the tags (0-based classes) as attribute `tags`.
The gathered `cams.h5` holds external links to the shards' datasets: an index, not a copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .data.voc import atomic_path


class CamWriter:
    """Writes one HDF5 file of CAMs; it appears at `path` only when closed without error."""

    def __init__(self, path: str | Path, compression_level: int = 4):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = atomic_path(self.path)
        self.file = h5py.File(self.tmp, "w")
        self.level = compression_level

    def write(self, name: str, cams: np.ndarray, tags: list[int]) -> None:
        cams = np.asarray(cams, dtype=np.float16)
        if cams.ndim != 3 or cams.shape[0] != len(tags):
            raise ValueError(f"{name}: expected ({len(tags)}, H, W) CAMs, got {cams.shape}")
        chunks = (1, *cams.shape[1:]) if cams.shape[0] else None
        dataset = self.file.create_dataset(name, data=cams, chunks=chunks,
                                           compression="gzip" if chunks else None,
                                           compression_opts=self.level if chunks else None, shuffle=bool(chunks))
        dataset.attrs["tags"] = np.asarray(tags, dtype=np.int64)

    def close(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort() if exc_type else self.close()


def read_cams(path: str | Path, name: str) -> tuple[np.ndarray, list[int]]:
    """(K, H, W) float32 CAMs and the K tags of one image."""
    with h5py.File(path, "r") as handle:
        return read_cam_entry(handle, name)


def read_cam_entry(handle: h5py.File, name: str) -> tuple[np.ndarray, list[int]]:
    if name not in handle:
        raise KeyError(f"{handle.filename} has no CAMs for image {name!r}")
    dataset = handle[name]
    return dataset[()].astype(np.float32), [int(tag) for tag in dataset.attrs["tags"]]


def cam_names(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as handle:
        return list(handle.keys())


def gather_cams(shard_paths: list[str | Path], out_path: str | Path) -> int:
    """Write an index HDF5 file that links every image's CAMs in the shards (no data is copied)."""
    out_path = Path(out_path)
    tmp = atomic_path(out_path)
    count = 0
    with h5py.File(tmp, "w") as index:
        for shard_path in shard_paths:
            relative = os.path.relpath(Path(shard_path).resolve(), out_path.parent.resolve())
            for name in cam_names(shard_path):
                if name in index:
                    raise ValueError(f"image {name!r} appears in two CAM shards (second: {shard_path})")
                index[name] = h5py.ExternalLink(relative, f"/{name}")
                count += 1
    os.replace(tmp, out_path)
    return count
