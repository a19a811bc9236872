"""The tensors a torch.save file holds, their names and shapes, read without torch.

Snakemake builds its plan where the training stack may be absent (see `wsss/core/rules.py`), and a weights
file that cannot be used should stop the run there, before minutes of other jobs. This reads what
torch.load would: the pickle that describes the object (tensors as storage references with a shape),
through an unpickler that builds nothing but dicts, lists, numbers, strings and tensor descriptions,
and checks that every storage the tensors refer to is present whole. The data itself is not read.

Formats: torch's zip archive (torch >= 1.6) and the earlier "legacy" stream (a magic number, then
pickles, then the storages one after another). torch's oldest tar format is recognised and left to
torch.load at training time.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .artifacts import ArtifactError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
ZIP_SIGNATURE = b"PK\x03\x04"
ELEMENT_BYTES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                 "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                 "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "UntypedStorage": 1}


@dataclass(frozen=True)
class StorageRef:
    key: str
    element_bytes: int
    numel: int


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    storage: StorageRef


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorInfo:
    return TensorInfo(tuple(int(extent) for extent in size), storage)


def _rebuild_parameter(data, *_ignored):
    return data


class _Refused(pickle.UnpicklingError):
    """The pickle names something a state dict does not hold."""


class _StorageType:
    def __init__(self, name: str):
        self.element_bytes = ELEMENT_BYTES[name]


# what a state dict's pickle may name, and what each becomes here; anything else is refused unbuilt
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in ELEMENT_BYTES},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"it names {module}.{name}, which a state dict does not hold") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise _Refused(f"unexpected storage reference {pid!r:.80}")
        return StorageRef(str(pid[2]), pid[1].element_bytes, int(pid[4]))


def _unpickle(stream) -> object:
    return _Unpickler(stream).load()


def _read_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise ArtifactError("no data.pkl in the archive")
        prefix = pickles[0][: -len("data.pkl")]
        obj = _unpickle(io.BytesIO(archive.read(pickles[0])))
        sizes = {name[len(prefix) + len("data/"):]: archive.getinfo(name).file_size
                 for name in names if name.startswith(prefix + "data/")}
    for storage in _storages(obj):
        if sizes.get(storage.key) != storage.numel * storage.element_bytes:
            raise ArtifactError(f"storage {storage.key} is missing or of the wrong size")
    return obj


def _read_legacy(path: Path, file_size: int) -> object:
    with open(path, "rb") as stream:
        if _unpickle(stream) != LEGACY_MAGIC_NUMBER:
            raise ArtifactError("no torch magic number")
        _unpickle(stream)  # protocol version
        _unpickle(stream)  # system info
        obj = _unpickle(stream)
        keys = _unpickle(stream)
        storages = {storage.key: storage for storage in _storages(obj)}
        for key in keys:
            (numel,) = struct.unpack("<q", stream.read(8))
            storage = storages.get(str(key))
            if storage is None or numel != storage.numel:
                raise ArtifactError(f"storage {key} is not the one its tensors refer to")
            stream.seek(numel * storage.element_bytes, io.SEEK_CUR)
        if stream.tell() > file_size:
            raise ArtifactError("its storages run past the end of the file")
    return obj


def _storages(obj) -> list[StorageRef]:
    if isinstance(obj, TensorInfo):
        return [obj.storage]
    if isinstance(obj, dict):
        return [storage for value in obj.values() for storage in _storages(value)]
    if isinstance(obj, (list, tuple)):
        return [storage for value in obj for storage in _storages(value)]
    return []


def read_torch_header(path: str | Path, what: str = "torch file") -> object | None:
    """The object a torch.save file holds, each tensor a `TensorInfo` (shape, storage); None for torch's oldest
    (tar) format, which only torch reads. A file that torch.load could not read raises ArtifactError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} {path} does not exist")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as stream:
            if stream.read(4) == ZIP_SIGNATURE:
                raise ArtifactError("a zip archive without its end")
        if tarfile.is_tarfile(path):
            return None
        return _read_legacy(path, path.stat().st_size)
    except Exception as error:  # noqa: BLE001  (parsing arbitrary bytes: any failure means an unreadable file)
        detail = str(error) if isinstance(error, (ArtifactError, _Refused)) else type(error).__name__
        raise ArtifactError(f"{what} {path} is not a readable torch file: truncated, or not written by "
                            f"torch.save ({detail})") from None


def tensor_shapes(path: str | Path, what: str = "torch file") -> dict[str, tuple[int, ...] | None] | None:
    """{name: shape} of the dict of tensors a torch.save file holds (None for a value that is not a tensor); None
    for the tar format. A file holding something other than a dict raises ArtifactError naming it."""
    obj = read_torch_header(path, what)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ArtifactError(f"{what} {path} holds a {type(obj).__name__}, not a dict of tensors")
    return {str(key): _shape_or_nested(value) for key, value in obj.items()}


def _shape_or_nested(value):
    if isinstance(value, TensorInfo):
        return value.shape
    if isinstance(value, dict):
        return {str(key): _shape_or_nested(inner) for key, inner in value.items()}
    return None
