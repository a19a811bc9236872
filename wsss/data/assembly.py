"""What assembling a dataset root from downloaded archives needs, whatever the dataset (`voc2012`, `coco2014`).

`assembled_root` yields a temporary folder that appears at the root only once everything is written, with the
archives unpacked into scratch folders inside it (`unpack`, refusing members that would land outside) and
removed at the end, and a `prepared.json` that records the archives used and the counts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..artifacts import ArtifactError, atomic_directory, write_json
from .download import extract_into

SCRATCH_PREFIX = "_unpacked-"


def check_roles(archives: dict, needed: tuple[str, ...], optional: tuple[str, ...], dataset: str) -> dict[str, Path]:
    """The archives by role, as paths; a missing needed role or an unknown one is an error."""
    archives = {role: Path(path) for role, path in archives.items() if path}
    missing = [role for role in needed if role not in archives]
    if missing:
        raise ArtifactError(f"dataset.archives lacks {', '.join(missing)}: {dataset} needs {', '.join(needed)}")
    unknown = sorted(set(archives) - set(needed) - set(optional))
    if unknown:
        raise ArtifactError(f"dataset.archives: unknown role(s) {', '.join(unknown)} for {dataset} (known: "
                            f"{', '.join(needed + optional)})")
    return archives


@contextlib.contextmanager
def assembled_root(root: str | os.PathLike, source: str, archives: dict[str, Path]):
    """A temporary folder to assemble the dataset in, and a dict for the counts to record; the folder appears
    at `root` (without its scratch folders, with prepared.json) only when the block succeeds."""
    counts: dict = {}
    with atomic_directory(root) as folder:
        yield folder, counts
        for scratch in folder.glob(f"{SCRATCH_PREFIX}*"):
            shutil.rmtree(scratch)
        write_json(folder / "prepared.json", {"source": source, "archives": {role: path.name for role, path
                                                                            in sorted(archives.items())}, **counts})


def assemble(build, archives: dict, root: str | os.PathLike, source: str, needed: tuple[str, ...],
             optional: tuple[str, ...], workers: int = 1, progress=None, log=print) -> dict:
    """Check the archives' roles, then `build(archives, folder, workers, progress, log) -> counts` the dataset in
    a temporary folder that appears at `root` when it returns; return the counts."""
    archives = check_roles(archives, needed, optional, source)
    with assembled_root(root, source, archives) as (folder, counts):
        counts.update(build(archives, folder, workers, progress, log))
    return counts


def unpack(archive: Path, root: Path, role: str, log=print) -> Path:
    """Unpack `archive` into a scratch folder of the root being assembled; return that folder."""
    log(f"unpacking {archive}")
    return extract_into(archive, root / f"{SCRATCH_PREFIX}{role}")


def find_folder(top: Path, relative: str, archive: Path) -> Path:
    """The folder `relative` (e.g. 'VOC2012') under `top`, wherever the archive nests it; an error names the
    archive when there is none."""
    for folder in sorted(top.rglob(Path(relative).name)):
        if folder.is_dir() and folder.as_posix().endswith(relative):
            return folder
    raise ArtifactError(f"{archive}: no {relative}/ folder inside; is it the right archive?")


def take_saliency_maps(archive: Path, root: Path, log=print) -> int:
    """Every PNG of the saliency archive into root/saliency/, by file name (two of one name are an error)."""
    maps = unpack(archive, root, "saliency", log)
    (root / "saliency").mkdir()
    taken = 0
    for path in sorted(maps.rglob("*.png")):
        target = root / "saliency" / path.name
        if target.exists():
            raise ArtifactError(f"{archive}: two saliency maps are named {path.name}")
        os.replace(path, target)
        taken += 1
    if not taken:
        raise ArtifactError(f"{archive} holds no PNG saliency map")
    return taken


def run_tasks(function, tasks: list, workers: int, progress=None, desc: str = "") -> list:
    """`function` over `tasks` (on a process pool when workers > 1), in order; the first error stops it."""
    bar = progress(total=len(tasks), desc=desc) if progress else None
    results = []
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(function, tasks, chunksize=max(1, len(tasks) // (workers * 8))):
                results.append(result)
                if bar is not None:
                    bar.update(1)
    else:
        for task in tasks:
            results.append(function(task))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return results
