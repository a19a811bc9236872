"""Downloads that resume, are verified, and appear only when whole; archives extracted without escaping their folder.

`fetch` streams a URL (http, https or file) into `NAME.part` beside the destination. A cut connection
keeps the partial file and the next call asks for the rest (HTTP Range), so the bytes fetched stay
near the file's size. The file is renamed to its name only once its sha256 (and size, when given)
match; a pin may be a prefix of the hash (at least 8 hex digits) where only that is published. On a mismatch it stays `NAME.part` and the error names the file, the expected and the found
hash: a rerun never takes it as done, and with a corrected pin it is checked again without
downloading it anew.

`extract` unpacks a tar (any compression) or zip archive into a folder that appears as a whole. A
member that would land outside it is refused, and the error names the member: an absolute name, a
`..`, a link pointing out, a device file. For tar, Python's `data` extraction filter decides (and an
absolute name, which that filter would make relative, is refused as well). A member that cannot be
read (a damaged or cut archive) is an error naming the archive and the member, not the folder being
filled, which is removed.

Standard library only: downloads run on the submitting host (local rules), which may lack the training stack.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ...core.artifacts import ArtifactError, atomic_directory, commit

CHUNK_BYTES = 1 << 20


class DownloadError(ArtifactError):
    """A download that failed or does not match its pin; the message names the file and what to do."""


def partial_path(destination: str | os.PathLike) -> Path:
    destination = Path(destination)
    return destination.with_name(destination.name + ".part")


def _open(url: str, offset: int, timeout: float):
    """(response, offset the response starts at) for `url` from byte `offset` on."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after `offset`: the partial file is whole already
            return None, offset
        raise
    if url.startswith("file:"):
        response.seek(offset)
        return response, offset
    return response, offset if response.status == 206 else 0


def _copy(response, partial: Path, offset: int, total: int | None, progress) -> int:
    """Append the response to the partial file (from `offset`); return the bytes received."""
    received = 0
    with open(partial, "r+b" if partial.exists() else "wb") as handle:
        handle.seek(offset)
        handle.truncate()
        bar = progress(total=total, initial=offset, unit="B", unit_scale=True, desc=partial.name) if progress else None
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
            received += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    return received


def fetch(name: str, url: str | None, destination: str | os.PathLike, sha256: str | None, size: int | None = None,
          progress=None, timeout: float = 60.0) -> int:
    """Download `url` to `destination` (resuming a partial file), checked against `sha256` and `size`; return the
    bytes received over the network in this call. `name` is the `downloads` entry, for the messages."""
    destination = Path(destination)
    if not url:
        raise DownloadError(f"downloads.{name}.url is not set: no public mirror of {destination.name} is stable "
                            f"enough to pin; set it in your config to a mirror or a local copy (file:///path/to/file)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(destination)
    offset = partial.stat().st_size if partial.exists() else 0
    received = 0
    if size is None or offset < size:
        try:
            response, start = _open(url, offset, timeout)
            if response is not None:
                with response:
                    total = size or _content_total(response, start)
                    received = _copy(response, partial, start, total, progress)
                if total is not None and start + received < total:
                    raise ConnectionError(f"the connection closed after {start + received} of {total} bytes")
        except (urllib.error.URLError, OSError, ValueError) as error:
            kept = partial.stat().st_size if partial.exists() else 0
            raise DownloadError(f"downloads.{name}: fetching {url} failed ({error}); {kept} bytes are kept in "
                                f"{partial}: run again to resume") from None
    check(name, partial, destination, sha256, size)
    commit(partial, destination)
    return received


def _content_total(response, start: int) -> int | None:
    length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
    return start + int(length) if length else None


def check(name: str, partial: Path, destination: Path, sha256: str | None, size: int | None) -> None:
    """The downloaded file against its pin; a mismatch is an error naming the file and both values."""
    found_size = partial.stat().st_size
    if size is not None and found_size != size:
        raise DownloadError(f"downloads.{name}: {destination.name} has {found_size} bytes, the pin says {size}; "
                            f"kept as {partial} (run again to resume if it is short)")
    if sha256 is None:
        raise DownloadError(f"downloads.{name}.sha256 is not set: a download is only taken once its hash is "
                            f"checked (the file's sha256 is {file_digest(partial)}; kept as {partial})")
    found = file_digest(partial)
    if not found.startswith(sha256.lower()):  # a pin may be a prefix, where only that is published
        raise DownloadError(f"downloads.{name}: {destination.name} has sha256 {found}, expected "
                            f"{sha256}{'...' if len(sha256) < 64 else ''}; kept as {partial}, never taken as done "
                            f"(check the url and the pin)")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Unpack a tar or zip archive into `target`, which appears as a whole; a member that would land outside it
    (or a device file) is refused, naming the member and the archive."""
    archive, target = Path(archive), Path(target)
    with atomic_directory(target) as temporary:
        extract_into(archive, temporary)
    return target


def extract_into(archive: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Unpack an archive into an existing scratch `folder` (inside a temporary folder that appears as a whole),
    with the same refusals as `extract`."""
    archive, folder = Path(archive), Path(folder)
    if not archive.is_file():
        raise ArtifactError(f"archive {archive} does not exist")
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, folder)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, folder)
    else:
        raise ArtifactError(f"{archive} is neither a tar nor a zip archive")
    return folder


UNREADABLE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)  # a damaged or cut archive
REFUSALS = {  # why the tar `data` filter refuses a member, in words that name no path of the folder being filled
    tarfile.AbsolutePathError: "an absolute name",
    tarfile.OutsideDestinationError: "it would land outside the folder it is extracted into",
    tarfile.AbsoluteLinkError: "a link to an absolute path",
    tarfile.LinkOutsideDestinationError: "a link pointing outside the folder it is extracted into",
    tarfile.SpecialFileError: "a device or other special file",
}


def _unreadable(archive: Path, where: str, error: Exception) -> ArtifactError:
    """The error for an archive that cannot be read at `where`; an OSError's file name (in the folder being
    filled, which is removed) is left out."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
    return ArtifactError(f"{archive}: {where} cannot be extracted ({reason}); is the archive whole?")


def _extract_tar(archive: Path, folder: Path) -> None:
    where = "the start"
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                where = f"member {member.name}"
                if PurePosixPath(member.name).is_absolute():  # the data filter would strip the slash; refuse instead
                    raise ArtifactError(f"{archive}: member {member.name!r} refused: an absolute name")
                try:
                    tar.extract(member, folder, filter="data")
                except tarfile.FilterError as error:
                    reason = REFUSALS.get(type(error), type(error).__name__)
                    raise ArtifactError(f"{archive}: member {member.name!r} refused: {reason}") from None
                where = f"the member after {member.name}"
            if not _ends_with_end_of_archive(tar):
                raise _unreadable(archive, where, EOFError("the archive stops without tar's end-of-archive block"))
    except UNREADABLE as error:
        raise _unreadable(archive, where, error) from None


def _ends_with_end_of_archive(tar: tarfile.TarFile) -> bool:
    """Whether a zero block follows the last member, as tar writes at the end. Without it, the archive was cut at
    a member's boundary, which tarfile reads as a shorter, whole archive."""
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    return len(block) == tarfile.BLOCKSIZE and not block.strip(b"\0")


def _extract_zip(archive: Path, folder: Path) -> None:
    where = "the start"
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                where = f"member {member.filename}"
                path = PurePosixPath(member.filename)
                if (path.is_absolute() or ".." in path.parts or member.filename.startswith(("\\", "/"))
                        or ":" in path.parts[0]):
                    raise ArtifactError(f"{archive}: member {member.filename!r} refused: it would land outside "
                                        f"the folder it is extracted into")
                kind = stat.S_IFMT(member.external_attr >> 16)  # 0 where the zip tool recorded no file type
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise ArtifactError(f"{archive}: member {member.filename!r} refused: links and special files are "
                                        f"not extracted")
                zipped.extract(member, folder)
    except UNREADABLE as error:
        raise _unreadable(archive, where, error) from None
