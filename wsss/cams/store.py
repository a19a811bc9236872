"""CAM storage in HDF5 (h5py only, no torch, so CRF worker processes can import it cheaply).

One HDF5 file per shard; in it one dataset per image, named by the image, holding the (K, H, W)
float16 CAMs of the image's K tagged classes at image resolution, each normalised to [0, 1], chunked
one class a chunk and gzip-compressed, with the tags (0-based classes) as attribute `tags`. A shard
is written under a temporary name and renamed when complete; its attributes `complete` and
`num_images` let a reader tell a finished shard from a damaged one. The gathered `cams.h5` holds
external links to the shards' datasets: an index, not a copy. A damaged shard found through it is
removed with it, so that the next run recomputes both.

HDF5 file locking is off: every file has one writer (one job per shard, then the gather), and
locking fails or hangs on many shared filesystems (NFS, Lustre).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..core.artifacts import ArtifactError, commit, invalidate, prepare_temporary, remove_path


def open_hdf5(path: str | Path, mode: str = "r") -> h5py.File:
    """An HDF5 file without file locking; an unreadable file raises ArtifactError naming it."""
    try:
        return h5py.File(path, mode, locking=False)
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist") from None
    except OSError as error:
        raise ArtifactError(f"{path} is not a readable HDF5 file (truncated?): {error}") from None


class CamWriter:
    """Writes one HDF5 file of CAMs; it appears at `path` only when closed without error.

    `expected_names`: the images the file must hold; closing with any of them missing is an error.
    """

    def __init__(self, path: str | Path, expected_names: list[str] | None = None, compression_level: int = 4):
        self.path = Path(path)
        self.expected = None if expected_names is None else list(expected_names)
        self.tmp = prepare_temporary(self.path)
        self.file = open_hdf5(self.tmp, "w")
        self.level = compression_level
        self.written = 0

    def write(self, name: str, cams: np.ndarray, tags: list[int]) -> None:
        cams = np.asarray(cams, dtype=np.float16)
        if cams.ndim != 3 or cams.shape[0] != len(tags):
            raise ValueError(f"{name}: expected ({len(tags)}, H, W) CAMs, got {cams.shape}")
        if not np.isfinite(cams).all():
            raise ArtifactError(f"CAMs of {name} for {self.path} are not finite (NaN or infinite): the classifier "
                                f"that made them is broken")
        chunks = (1, *cams.shape[1:]) if cams.shape[0] else None
        dataset = self.file.create_dataset(name, data=cams, chunks=chunks,
                                           compression="gzip" if chunks else None,
                                           compression_opts=self.level if chunks else None, shuffle=bool(chunks))
        dataset.attrs["tags"] = np.asarray(tags, dtype=np.int64)
        self.written += 1

    def close(self) -> None:
        if self.expected is not None:
            missing = sorted(set(self.expected) - set(self.file.keys()))
            if missing:
                raise ValueError(f"{self.path}: no CAMs written for {len(missing)} images, e.g. {missing[0]}")
        self.file.attrs["complete"] = True
        self.file.attrs["num_images"] = self.written
        self.file.close()
        commit(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        remove_path(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort() if exc_type else self.close()


class BackgroundWriter:
    """Writes into a CamWriter from a thread, so that compressing one batch's maps overlaps computing the next.

    `write` queues (at most `depth` images wait); leaving the context waits for every queued image and
    raises the first error the thread met (the CamWriter is then aborted by its own context)."""

    def __init__(self, writer: CamWriter, depth: int = 64):
        import queue
        import threading

        self.writer = writer
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="cam-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writer.write(*item)
                except BaseException as error:  # noqa: BLE001  (handed to the main thread)
                    self.error = error

    def write(self, name: str, cams: np.ndarray, tags: list[int]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((name, cams, tags))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_type is None:
            raise self.error


def read_cams(path: str | Path, name: str) -> tuple[np.ndarray, list[int]]:
    """(K, H, W) float32 CAMs and the K tags of one image."""
    with open_hdf5(path) as handle:
        return read_cam_entry(handle, name)


def read_cam_entry(handle: h5py.File, name: str) -> tuple[np.ndarray, list[int]]:
    link = handle.get(name, getlink=True)
    if link is None:
        raise ArtifactError(f"{handle.filename} has no CAMs for image {name!r}")
    try:
        dataset = handle[name]
        return dataset[()].astype(np.float32), [int(tag) for tag in dataset.attrs["tags"]]
    except (OSError, KeyError) as error:
        if isinstance(link, h5py.ExternalLink):  # the index points into a shard that is damaged or gone
            shard = Path(handle.filename).parent / link.filename
            check_shard(shard, gathered=(handle.filename,))
            raise invalidate(shard, f"the CAMs of {name!r} cannot be read ({error})",
                             gathered=(handle.filename,)) from None
        raise ArtifactError(f"the CAMs of {name!r} in {handle.filename} cannot be read: {error}") from None


def cam_names(path: str | Path) -> list[str]:
    with open_hdf5(path) as handle:
        return list(handle.keys())


def check_shard(path: str | Path, expected_names: list[str] | None = None, gathered: tuple = ()) -> list[str]:
    """The names a finished CAM shard holds; a damaged or incomplete shard is removed, with the `gathered` index
    that links into it (so the next run recomputes both), and ArtifactError raised naming it."""
    try:
        with open_hdf5(path) as handle:
            if not handle.attrs.get("complete", False):
                raise ArtifactError("not marked complete")
            names = list(handle.keys())
            if int(handle.attrs.get("num_images", -1)) != len(names):
                raise ArtifactError(f"holds {len(names)} images, {handle.attrs.get('num_images')} were written")
    except ArtifactError as error:
        raise invalidate(path, f"damaged CAM shard ({str(error).removeprefix(f'{path} ')})", gathered) from None
    if expected_names is not None and sorted(names) != sorted(expected_names):
        missing = sorted(set(expected_names) - set(names))
        extra = sorted(set(names) - set(expected_names))
        raise invalidate(path, f"CAM shard of other images than expected (missing {missing[:3]}, extra {extra[:3]})",
                         gathered)
    return names


def gather_cams(shard_paths: list[str | Path], out_path: str | Path) -> int:
    """Write an index HDF5 file that links every image's CAMs in the shards (no data is copied)."""
    out_path = Path(out_path)
    tmp = prepare_temporary(out_path)
    count = 0
    try:
        with open_hdf5(tmp, "w") as index:
            for shard_path in shard_paths:
                relative = os.path.relpath(Path(shard_path).resolve(), out_path.parent.resolve())
                for name in check_shard(shard_path):
                    if name in index:
                        raise ValueError(f"image {name!r} appears in two CAM shards (second: {shard_path})")
                    index[name] = h5py.ExternalLink(relative, f"/{name}")
                    count += 1
        commit(tmp, out_path)
    except BaseException:
        remove_path(tmp)
        raise
    return count
