"""Artifacts: what a stage writes appears whole or not at all; what it reads is checked and named.

Every writer goes through `atomic_file` / `atomic_directory`: the content is written under a
temporary sibling name (`.NAME.tmp-HOST-PID`), flushed to disk, then renamed onto the target, so a
killed job never leaves a half-written file that a rerun would take as done. A job writing NAME
first removes the temporaries of NAME that killed jobs left behind (only one job writes a given
path at a time; Snakemake's lock sees to that).

A file that is missing, unreadable or inconsistent raises `ArtifactError`, whose message names the
file. When a stage finds an intermediate artifact damaged (a truncated CAM shard, a pseudo-label
PNG deleted from its shard), `invalidate` removes it so that the next run recomputes it.

torch is imported only by the functions that read or write torch files: the workflow's rules import
this module to build the DAG on hosts without the training stack.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import socket
from pathlib import Path

log = logging.getLogger("wsss")


class ArtifactError(RuntimeError):
    """An input or intermediate file that is missing, unreadable or inconsistent; the message names it."""


def temporary_sibling(path: str | os.PathLike) -> Path:
    """The name `path` is written under before it is renamed into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `path` left by killed writers; return what was removed."""
    path = Path(path)
    stale = [Path(p) for p in glob.glob(str(path.parent / f".{glob.escape(path.name)}.tmp-*"))]
    for leftover in stale:
        remove_path(leftover)
    if stale:
        log.info("removed %d leftover temporary file(s) of %s from killed runs", len(stale), path)
    return stale


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file, a link or a directory tree; nothing when it does not exist."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prepare_temporary(path: str | os.PathLike) -> Path:
    """Make the target's folder, clear stale temporaries and return the temporary name to write to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    return temporary_sibling(path)


def commit(temporary: Path, path: str | os.PathLike) -> None:
    """Flush `temporary` (a file, or a directory and the files in it) to disk and rename it onto `path`."""
    path = Path(path)
    if temporary.is_dir():
        for child in temporary.rglob("*"):
            if child.is_file():
                _fsync(child)
    _fsync(temporary)
    os.replace(temporary, path)
    _fsync(path.parent)


@contextlib.contextmanager
def _atomic(path: str | os.PathLike, make_folder: bool):
    temporary = prepare_temporary(path)
    if make_folder:
        temporary.mkdir()
    try:
        yield temporary
        commit(temporary, path)
    except BaseException:
        remove_path(temporary)
        raise


def atomic_file(path: str | os.PathLike):
    """Context manager yielding a temporary path to write the file to; it appears at `path` only if the block
    succeeds."""
    return _atomic(path, make_folder=False)


def atomic_directory(path: str | os.PathLike):
    """Context manager yielding a temporary folder to fill; it appears at `path` as a whole only if the block
    succeeds. An existing `path` is refused: a directory output is computed once, and Snakemake removes it
    before it reruns the job."""
    if Path(path).exists():
        raise FileExistsError(f"{path} exists already; remove it to recompute")
    return _atomic(path, make_folder=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as temporary:
        temporary.write_text(text)


def write_lines(path: str | os.PathLike, lines: list[str]) -> None:
    write_text(path, "".join(line + "\n" for line in lines))


def write_json(path: str | os.PathLike, obj) -> None:
    """JSON with 2-space indentation. NaN and infinity are refused: they are not JSON, and a metric or a
    loss that is not finite means the stage went wrong."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError as error:
        raise ArtifactError(f"{path}: refusing to write a value that is not finite ({error})") from None
    write_text(path, text + "\n")


def read_json(path: str | os.PathLike, shown_as: str | None = None):
    """The JSON in a file; errors name it as `shown_as` (else its path)."""
    path = Path(path)
    shown_as = shown_as or str(path)
    if not path.is_file():
        raise ArtifactError(f"{shown_as} does not exist")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{shown_as} is not valid JSON: {error}") from None


def save_torch(obj, path: str | os.PathLike) -> None:
    """torch.save, atomically."""
    import torch

    with atomic_file(path) as temporary:
        torch.save(obj, temporary)


def load_torch(path: str | os.PathLike, what: str = "torch file", map_location="cpu") -> dict:
    """A dict saved with torch.save (tensors, numbers, strings, lists, dicts; no arbitrary objects).

    A missing, truncated or foreign file raises ArtifactError naming `path` and what it should be.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        # torch's own message suggests loading with weights_only=False, i.e. running whatever the file holds
        raise ArtifactError(f"{what} {path} is not a readable torch file: truncated, or not written by "
                            f"torch.save ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{what} {path} holds a {type(state).__name__}, not a dict of tensors")
    return state


def remove_outdated(patterns: list[str]) -> list[Path]:
    """Remove every path matching the glob `patterns` (outputs of later jobs that a job about to replace their
    input has made stale); return what was removed."""
    removed = sorted({Path(path) for pattern in patterns for path in glob.glob(pattern)})
    for path in removed:
        remove_path(path)
    return removed


NEW = "new"  # the planning check's value for what has not been written yet
FOLDER_RECORD = ".written.json"
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"  # Snakemake's, in every directory output it finished


def folder_files(folder: Path) -> dict[str, tuple[int, int]]:
    """{name: (size, mtime_ns)} of the files directly in `folder`, but for the record and Snakemake's timestamp."""
    files = {}
    for entry in os.scandir(folder):
        if entry.name not in (FOLDER_RECORD, SNAKEMAKE_TIMESTAMP):
            status = entry.stat(follow_symlinks=False)
            files[entry.name] = (status.st_size, status.st_mtime_ns)
    return files


def record_folder(folder: str | os.PathLike, created_with: str) -> None:
    """Write the record `folder_check` compares with: each file's size and mtime, and the planning value the folder
    was made with. Written last, into the folder about to be committed (renaming keeps the files' times)."""
    folder = Path(folder)
    record = {"created_with": created_with, "files": {name: list(stat) for name, stat in folder_files(folder).items()}}
    (folder / FOLDER_RECORD).write_text(json.dumps(record, sort_keys=True))


def folder_check(folder: str | os.PathLike) -> str:
    """A directory output's planning value (a rule's `check` param): while its files keep the size and mtime
    recorded when it was written, the value it was made with, so nothing reruns; else a value naming the first
    file changed, removed or added, so that Snakemake sees new params and makes the folder again (and
    everything after it). One stat per file, no reading: cheap enough to run on every plan."""
    folder = Path(folder)
    if not folder.is_dir():
        return NEW
    try:
        record = json.loads((folder / FOLDER_RECORD).read_text())
        created_with, recorded = record["created_with"], record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {FOLDER_RECORD} in {folder}"
    found = folder_files(folder)
    for name in sorted(set(recorded) | set(found)):
        change = file_change(f"{folder.name}/{name}", recorded.get(name), found.get(name))
        if change:
            return f"changed since written: {change}"
    return created_with


def file_change(name: str, was: list[int] | None, now: tuple[int, int] | None) -> str | None:
    """How a file's (size, mtime_ns) changed, with the times, so that a second change of the same file reads
    differently from the first (and reruns too); None when it did not."""
    if was is None:
        return f"{name} was added (size {now[0]}, mtime_ns {now[1]})"
    if now is None:
        return f"{name} was removed (it had size {was[0]}, mtime_ns {was[1]})"
    if tuple(was) != now:
        return f"{name} changed (size {now[0]}, mtime_ns {now[1]})"
    return None


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def invalidate(path: str | os.PathLike, reason: str, gathered: tuple[str | os.PathLike, ...] = ()) -> ArtifactError:
    """Remove a damaged intermediate artifact, and the `gathered` indexes built from it (which would name it
    still), so the next run recomputes them; return the error to raise."""
    for stale in (path, *gathered):
        remove_path(stale)
    removed = f"{path} and {', '.join(map(str, gathered))}" if gathered else str(path)
    log.error("%s: %s; removed %s, so that the next run of the workflow recomputes them", path, reason, removed)
    return ArtifactError(f"{path}: {reason}. Removed {removed}: run the workflow again to recompute "
                         f"{'them' if gathered else 'it'}")
