"""What assembling a dataset root from downloaded archives needs, whatever the dataset (`voc2012`, `coco2014`).

`assemble` builds the dataset in a `Workspace`: a temporary folder that appears at the root only once everything
is written, with the archives unpacked into scratch folders inside it (refusing members that would land outside)
and removed at the end, and a `prepared.json` that records the archives used and the counts. The workspace
remembers which archive member each unpacked file came from, moved or not: errors name the archive and the member
(`Workspace.member`), never a path in the temporary folder, which a failed assembly removes.

The assembly checks what the index will (`check_image`, `check_mask`, `check_saliency`: every file decoded, a
mask's size and values, a saliency map's size), so that a bad member fails the assembly, naming it, instead of
leaving a root that reads as prepared and that the index then refuses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from ...core.artifacts import ArtifactError, atomic_directory, write_json
from ..voc import check_label_values, decode_image
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


@dataclass
class Workspace:
    """The temporary folder a dataset is assembled in, the assembly's settings, and the archive member each
    unpacked file came from (`origins`: a file or folder -> (archive, member path); a folder's entry covers what
    lies under it)."""

    folder: Path
    workers: int = 1
    progress: Callable | None = None
    log: Callable = print
    origins: dict[Path, tuple[Path, PurePosixPath]] = field(default_factory=dict)

    def unpack(self, archive: Path, role: str) -> Path:
        """Unpack `archive` into a scratch folder of the workspace; return that folder."""
        self.log(f"unpacking {archive}")
        scratch = extract_into(archive, self.folder / f"{SCRATCH_PREFIX}{role}")
        self.origins[scratch] = (archive, PurePosixPath())
        return scratch

    def move(self, source: Path, destination: Path) -> None:
        """Rename a file or folder within the workspace, keeping the member it came from."""
        origin = self.origin(source)
        os.replace(source, destination)
        if origin is not None:
            self.origins[destination] = origin

    def origin(self, path: Path) -> tuple[Path, PurePosixPath] | None:
        """(archive, member path) of a file unpacked from an archive, moved since or not; None for another."""
        path = Path(path)
        for folder in (path, *path.parents):
            if folder in self.origins:
                archive, member = self.origins[folder]
                return archive, member / path.relative_to(folder).as_posix()
        return None

    def member(self, path: Path) -> str:
        """How errors name a file of the workspace: 'ARCHIVE: member NAME', or, for a file the assembly wrote,
        its path in the dataset being assembled."""
        origin = self.origin(path)
        if origin is None:
            return f"{Path(path).relative_to(self.folder).as_posix()} (written by the assembly)"
        archive, member = origin
        return f"{archive}: member {member}"


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
    """Check the archives' roles, then `build(archives, workspace) -> counts` the dataset in a temporary folder
    that appears at `root` when it returns; return the counts."""
    archives = check_roles(archives, needed, optional, source)
    with assembled_root(root, source, archives) as (folder, counts):
        counts.update(build(archives, Workspace(folder, workers, progress, log)))
    return counts


def find_folder(top: Path, relative: str, archive: Path) -> Path:
    """The folder `relative` (e.g. 'VOC2012') under `top`, wherever the archive nests it; an error names the
    archive when there is none."""
    for folder in sorted(top.rglob(Path(relative).name)):
        if folder.is_dir() and folder.as_posix().endswith(relative):
            return folder
    raise ArtifactError(f"{archive}: no {relative}/ folder inside; is it the right archive?")


def take_saliency_maps(archive: Path, space: Workspace) -> int:
    """Every PNG of the saliency archive into saliency/ of the workspace, by file name (two of one name are an
    error naming both members)."""
    maps = space.unpack(archive, "saliency")
    (space.folder / "saliency").mkdir()
    taken = 0
    for path in sorted(maps.rglob("*.png")):
        target = space.folder / "saliency" / path.name
        if target.exists():
            raise ArtifactError(f"two saliency maps are named {path.name}: {space.member(target)} and "
                                f"{space.member(path)}")
        space.move(path, target)
        taken += 1
    if not taken:
        raise ArtifactError(f"{archive} holds no PNG saliency map")
    return taken


def check_image(task: tuple[str, str]) -> tuple[int, int]:
    """Decode an image (path, how errors name it) fully, as the index will; return its (height, width)."""
    path, shown_as = task
    return decode_image(path, shown_as, "RGB").shape[:2]


def check_mask(task: tuple[str, str, tuple[int, int], str, int]) -> None:
    """A mask (path, how errors name it, its image's (height, width), how errors name the image, number of
    classes) decodes as a label map of its image's size with class values or 255."""
    path, shown_as, (height, width), image, num_classes = task
    label = decode_image(path, shown_as, "label")
    if label.shape != (height, width):
        raise ArtifactError(f"{shown_as}: size {label.shape[1]}x{label.shape[0]} differs from its image {image} "
                            f"({width}x{height})")
    check_label_values(label, shown_as, num_classes)


def check_saliency(task: tuple[str, str, str, str]) -> None:
    """A saliency map (path, how errors name it, its image's path, how errors name the image) decodes as grey
    levels of its image's size."""
    from PIL import Image

    path, shown_as, image_path, image = task
    grey = decode_image(path, shown_as, "L")
    with Image.open(image_path) as opened:
        width, height = opened.size
    if grey.shape != (height, width):
        raise ArtifactError(f"{shown_as}: size {grey.shape[1]}x{grey.shape[0]} differs from its image {image} "
                            f"({width}x{height})")


def check_saliency_maps(space: Workspace, names: list[str]) -> None:
    """The saliency maps of the listed images (those the index reads), against their images in JPEGImages/."""
    root = space.folder
    tasks = [(str(root / "saliency" / f"{name}.png"), space.member(root / "saliency" / f"{name}.png"),
              str(root / "JPEGImages" / f"{name}.jpg"), name)
             for name in names if (root / "saliency" / f"{name}.png").is_file()]
    run_tasks(check_saliency, tasks, space.workers, space.progress, "saliency maps")


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
