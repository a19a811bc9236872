"""Tiny archives in the real layouts, made from the built-in dataset: VOC 2012 trainval, SBD's benchmark.tgz and
VOC 2012 test (`VOCArchives`), COCO 2014's image zips and instance annotations (`COCOArchives`); and an HTTP
server on 127.0.0.1 that serves them (Range requests, a cut on demand).

In the VOC archives the built-in classes are named as VOC's first classes in the XML annotations, so the
assembled root is a 21-class VOC dataset in which those classes are the ones present. In the COCO archives each
class region of an image is one instance, its mask an RLE, under COCO categories (ids with gaps, COCO's names).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.data.sources.coco import COCO_CATEGORIES
from wsss.data.voc import VOC_CLASSES, read_label_png, read_name_list, tags_from_label


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes), honours Range, counts the bytes sent, and cuts a response short once
    when `cut_after` is set."""

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.sent, self.cut_after = files, 0, None
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.cut_after is not None:
            body, self.server.cut_after = body[: self.server.cut_after], None
        self.wfile.write(body)
        self.server.sent += len(body)

    def log_message(self, *args):
        pass


def tar_bytes(members: dict[str, bytes], mode: str = "w", reverse: bool = False) -> bytes:
    """A tar archive (mode "w", "w:gz") of name -> bytes, folders implied; `reverse` packs in the other order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name in sorted(members, reverse=reverse):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = 1_300_000_000
            tar.addfile(info, io.BytesIO(members[name]))
    return buffer.getvalue()


def png_bytes(label: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(label.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def xml_bytes(name: str, tags: list[int]) -> bytes:
    objects = "".join(f"<object><name>{VOC_CLASSES[tag + 1]}</name><difficult>0</difficult></object>"
                      for tag in tags)
    return f"<annotation><filename>{name}.jpg</filename>{objects}</annotation>".encode()


def mat_bytes(label: np.ndarray) -> bytes:
    """SBD's class mask file: a MATLAB struct GTcls with Segmentation, Boundaries and CategoriesPresent."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    present = np.unique(label[(label > 0) & (label < 255)]).astype(np.uint8)
    savemat(buffer, {"GTcls": {"Segmentation": label.astype(np.uint8), "Boundaries": np.zeros((1, 20), object),
                               "CategoriesPresent": present}})
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class VOCArchives:
    """The three archives (plus a saliency zip-free tar) made from a built-in dataset at `source`.

    VOC segmentation train: the first `voc_train` train images; VOC val: the val split; SBD: train images from
    `voc_train - overlap` on (so `overlap` images are in both, and VOC's mask must win there) plus the first
    val image (which train_aug must leave out); the last train image is only in SBD (VOC lacks its JPEG).
    """

    def __init__(self, source: Path, voc_train: int = 12, overlap: int = 4):
        self.source = Path(source)
        train = read_name_list(self.source / "ImageSets/Segmentation/train.txt")
        self.val = read_name_list(self.source / "ImageSets/Segmentation/val.txt")
        self.test = read_name_list(self.source / "ImageSets/Segmentation/test.txt")
        self.voc_train = train[:voc_train]
        self.sbd_train = train[voc_train - overlap:]
        self.sbd_val = self.val[:1]
        self.sbd_only = train[-1]
        self.train_aug = sorted((set(self.voc_train) | set(self.sbd_train) | set(self.sbd_val)) - set(self.val))

    def image(self, name: str) -> bytes:
        return (self.source / "JPEGImages" / f"{name}.jpg").read_bytes()

    def label(self, name: str) -> np.ndarray:
        return read_label_png(self.source / "SegmentationClass" / f"{name}.png")

    def voc_mask(self, name: str) -> np.ndarray:
        """VOC's own annotation differs from SBD's on the boundary band, marked 255 here as in VOC."""
        label = self.label(name).copy()
        label[0, :] = 255
        return label

    def tags(self, name: str) -> list[int]:
        return tags_from_label(self.label(name), len(VOC_CLASSES) - 1)

    def trainval_members(self, extra: dict[str, bytes] | None = None, lists: dict[str, list[str]] | None = None
                         ) -> dict[str, bytes]:
        top = "VOCdevkit/VOC2012"
        members = {}
        for name in self.voc_train + self.val + self.sbd_train[:-1]:
            members[f"{top}/JPEGImages/{name}.jpg"] = self.image(name)
            members[f"{top}/Annotations/{name}.xml"] = xml_bytes(name, self.tags(name))
        members[f"{top}/Annotations/{self.sbd_only}.xml"] = xml_bytes(self.sbd_only, self.tags(self.sbd_only))
        for name in self.voc_train + self.val:
            members[f"{top}/SegmentationClass/{name}.png"] = png_bytes(self.voc_mask(name))
        lists = {"train": self.voc_train, "val": self.val, **(lists or {})}
        for split, names in lists.items():
            members[f"{top}/ImageSets/Segmentation/{split}.txt"] = "".join(f"{n}\n" for n in names).encode()
        return {**members, **(extra or {})}

    def sbd_members(self, mask_of=None) -> dict[str, bytes]:
        top = "benchmark_RELEASE/dataset"
        members = {}
        for name in self.sbd_train + self.sbd_val:
            label = mask_of(name) if mask_of else self.label(name)
            members[f"{top}/cls/{name}.mat"] = mat_bytes(label)
            members[f"{top}/img/{name}.jpg"] = self.image(name)
        members[f"{top}/train.txt"] = "".join(f"{n}\n" for n in self.sbd_train).encode()
        members[f"{top}/val.txt"] = "".join(f"{n}\n" for n in self.sbd_val).encode()
        return members

    def test_members(self) -> dict[str, bytes]:
        top = "VOCdevkit/VOC2012"
        members = {f"{top}/JPEGImages/{name}.jpg": self.image(name) for name in self.test}
        members[f"{top}/ImageSets/Segmentation/test.txt"] = "".join(f"{n}\n" for n in self.test).encode()
        return members

    def saliency_members(self) -> dict[str, bytes]:
        return {f"saliency_maps/{name}.png": png_bytes((self.label(name) > 0) * 255)
                for name in self.train_aug}

    def archives(self, compression: str = "", reverse: bool = False) -> dict[str, bytes]:
        """name -> bytes of each archive (`compression` "gz" packs them otherwise: other bytes, same content)."""
        mode = f"w:{compression}" if compression else "w"
        return {"VOCtrainval_11-May-2012.tar": tar_bytes(self.trainval_members(), mode, reverse),
                "benchmark.tgz": tar_bytes(self.sbd_members(), "w:gz" if not compression else "w", reverse),
                "VOC2012test.tar": tar_bytes(self.test_members(), mode, reverse),
                "saliency.tar": tar_bytes(self.saliency_members(), mode, reverse)}


ROLES = {"trainval": "VOCtrainval_11-May-2012.tar", "sbd": "benchmark.tgz", "test": "VOC2012test.tar",
         "saliency": "saliency.tar"}


def downloads_section(server_url: str, archives: dict[str, bytes]) -> dict:
    return {name: {"url": f"{server_url}/{name}", "sha256": sha256(data), "size": len(data)}
            for name, data in archives.items()}


def write_archives(folder: Path, archives: dict[str, bytes], roles: dict[str, str] = ROLES) -> dict[str, Path]:
    """The archives as files in `folder`, by role."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, name in roles.items():
        (folder / name).write_bytes(archives[name])
        paths[role] = folder / name
    return paths


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in sorted(members):
            zipped.writestr(name, members[name])
    return buffer.getvalue()


def with_member(archive: bytes, member: str, data: bytes) -> bytes:
    """The archive (a zip, or a tar plain or gzipped) with one member's bytes replaced by `data`, or added."""
    if zipfile.is_zipfile(io.BytesIO(archive)):
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            return zip_bytes({**{name: zipped.read(name) for name in zipped.namelist()}, member: data})
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {info.name: tar.extractfile(info).read() for info in tar if info.isfile()}
    return tar_bytes({**members, member: data}, "w:gz" if archive[:2] == b"\x1f\x8b" else "w")


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a boolean mask: run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


COCO_IDS = (1, 3, 7, 18, 44, 90)  # COCO's ids have gaps; the built-in classes take these, and COCO's names


class COCOArchives:
    """train2014.zip, val2014.zip and annotations_trainval2014.zip made from a built-in dataset at `source` (its
    train and val splits); the last train image has no annotation (COCO's protocol leaves it out)."""

    def __init__(self, source: Path):
        self.source = Path(source)
        self.splits = {split: read_name_list(self.source / f"ImageSets/Segmentation/{split}.txt")
                       for split in ("train", "val")}
        built_in = read_name_list(self.source / "classes.txt")[1:]
        self.class_names = [COCO_CATEGORIES[category_id] for category_id in COCO_IDS[:len(built_in)]]

    def coco_name(self, split: str, index: int) -> str:
        return f"COCO_{split}2014_{index + 1:012d}"

    def label(self, name: str) -> np.ndarray:
        return read_label_png(self.source / "SegmentationClass" / f"{name}.png")

    def listed(self, split: str) -> list[str]:
        """The COCO names the assembled split must list (annotated images only)."""
        names = self.splits[split][:-1] if split == "train" else self.splits[split]
        return sorted(self.coco_name(split, index) for index, _ in enumerate(names))

    def instances(self, split: str) -> dict:
        images, annotations = [], []
        for index, name in enumerate(self.splits[split]):
            label = self.label(name)
            images.append({"id": index + 1, "file_name": f"{self.coco_name(split, index)}.jpg",
                           "height": label.shape[0], "width": label.shape[1]})
            if split == "train" and index == len(self.splits[split]) - 1:
                continue  # an image without any annotated object
            for value in np.unique(label):
                if 1 <= value <= len(self.class_names):
                    mask = label == value
                    annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                        "category_id": COCO_IDS[value - 1], "iscrowd": 0, "area": int(mask.sum()),
                                        "segmentation": {"counts": rle_counts(mask), "size": list(mask.shape)}})
        categories = [{"id": COCO_IDS[i], "name": name, "supercategory": "thing"}
                      for i, name in enumerate(self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def archives(self) -> dict[str, bytes]:
        archives = {}
        for split in ("train", "val"):
            archives[f"{split}2014.zip"] = zip_bytes({
                f"{split}2014/{self.coco_name(split, index)}.jpg":
                    (self.source / "JPEGImages" / f"{name}.jpg").read_bytes()
                for index, name in enumerate(self.splits[split])})
        archives["annotations_trainval2014.zip"] = zip_bytes({
            f"annotations/instances_{split}2014.json": json.dumps(self.instances(split)).encode()
            for split in ("train", "val")})
        return archives


COCO_ROLES = {"train_images": "train2014.zip", "val_images": "val2014.zip",
              "annotations": "annotations_trainval2014.zip"}
