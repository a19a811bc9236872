"""VOC 2012 + SBD and COCO 2014 from archives in the real layouts: assembled, checked, and run through the workflow
from a server on 127.0.0.1 (downloads resumed after a cut, pins checked, a mirror giving the same dataset)."""

import io
import json
import tarfile

import numpy as np
import pytest
import yaml
from conftest import TINY_CONFIG, snakemake
from dataset_archives import (
    COCO_ROLES,
    ROLES,
    COCOArchives,
    Server,
    VOCArchives,
    downloads_section,
    mat_bytes,
    png_bytes,
    sha256,
    tar_bytes,
    with_member,
    write_archives,
)

from wsss.core.artifacts import ArtifactError
from wsss.core.rules import index_specs
from wsss.data.manifest import build_manifest
from wsss.data.sources import coco2014, voc2012
from wsss.data.sources.assembly import SCRATCH_PREFIX
from wsss.data.voc import read_class_list, read_grey, read_label_png, read_name_list


@pytest.fixture(scope="module")
def voc_source(tmp_path_factory):
    """The built-in dataset the archives are made from."""
    from wsss.data.sources.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("voc_source") / "data"
    generate_dataset(root, {"train": 24, "val": 8, "test": 4}, seed=5, options={"image_size": 48})
    return VOCArchives(root)


@pytest.fixture(scope="module")
def assembled(voc_source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("assembled")
    archives = write_archives(folder / "downloads", voc_source.archives())
    root = folder / "VOC2012"
    counts = voc2012.assemble(archives, root, workers=2)
    return root, counts


def test_train_aug_is_sbd_and_voc_train_without_voc_val(voc_source, assembled):
    root, counts = assembled
    sets = root / "ImageSets/Segmentation"
    assert read_name_list(sets / "train_aug.txt") == voc_source.train_aug
    assert voc_source.sbd_val[0] not in voc_source.train_aug  # an SBD image in VOC val stays out
    assert read_name_list(sets / "train.txt") == voc_source.voc_train
    assert read_name_list(sets / "val.txt") == voc_source.val
    assert read_name_list(sets / "test.txt") == voc_source.test
    assert counts["splits"]["train_aug"] == len(voc_source.train_aug) and counts["images_from_sbd"] == 1
    for name in voc_source.test + [voc_source.sbd_only]:  # test images beside the others; one only SBD had
        assert (root / "JPEGImages" / f"{name}.jpg").read_bytes() == voc_source.image(name)


def test_sbd_masks_become_pngs_and_voc_masks_win_where_both_exist(voc_source, assembled):
    root, _ = assembled
    overlap = sorted(set(voc_source.voc_train) & set(voc_source.sbd_train))
    sbd_only = sorted(set(voc_source.sbd_train) - set(voc_source.voc_train))
    assert overlap and sbd_only
    for name in overlap:
        assert np.array_equal(read_label_png(root / "SegmentationClassAug" / f"{name}.png"), voc_source.voc_mask(name))
    for name in sbd_only:
        assert np.array_equal(read_label_png(root / "SegmentationClassAug" / f"{name}.png"), voc_source.label(name))
    for name in voc_source.voc_train:
        assert np.array_equal(read_label_png(root / "SegmentationClass" / f"{name}.png"), voc_source.voc_mask(name))


def test_tags_come_from_the_xml_annotations(voc_source, assembled):
    root, _ = assembled
    for split in ("train_aug", "train", "val"):
        tags = read_class_list(root / f"ImageSets/Segmentation/{split}_cls.txt")
        names = read_name_list(root / f"ImageSets/Segmentation/{split}.txt")
        assert list(tags) == names
        assert all(tags[name] == voc_source.tags(name) and tags[name] for name in names)


def test_saliency_maps_are_taken_by_name_and_the_index_accepts_the_root(voc_source, assembled):
    root, counts = assembled
    assert counts["saliency_maps"] == len(voc_source.train_aug)
    name = voc_source.train_aug[0]
    assert np.array_equal(read_grey(root / "saliency" / f"{name}.png") > 0, voc_source.label(name) > 0)
    config = {"dataset": {"train_split": "train_aug", "score_split": "train", "val_split": "val",
                          "test_split": "test", "masks": {"train_aug": "SegmentationClassAug"}},
              "experiments": {"cam": {}}}
    from wsss.core.config import validate_config

    config = validate_config({**config, "dataset": {"name": "v", "root": str(root), **config["dataset"]}})
    manifest = build_manifest(root, index_specs(config))
    assert len(manifest["splits"]["train_aug"]["names"]) == len(voc_source.train_aug)
    assert not list(root.glob("_unpacked-*"))  # the scratch folders are gone


def names_no_temporary(message: str) -> bool:
    """Whether an error names no path in the folder being assembled (removed when the assembly fails)."""
    return ".tmp-" not in message and SCRATCH_PREFIX not in message


def assemble_fails(tmp_path, voc_source, **replace) -> str:
    """Assemble with some archives replaced (role -> bytes); return the error (archives named by file name), after
    checking nothing is left and that the error names no temporary path."""
    archives = voc_source.archives()
    for role, data in replace.items():
        archives[ROLES[role]] = data
    paths = write_archives(tmp_path / "downloads", archives)
    with pytest.raises(ArtifactError) as error:
        voc2012.assemble(paths, tmp_path / "VOC2012", workers=1)
    assert not (tmp_path / "VOC2012").exists()  # no prepared.json: the next run assembles again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]  # no temporary a rerun could take
    assert names_no_temporary(str(error.value)), str(error.value)
    return str(error.value).replace(f"{tmp_path / 'downloads'}/", "")


def escaping_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo({"dotdot": "VOCdevkit/../../evil.txt", "absolute": "/tmp/evil.txt",
                                "symlink": "VOCdevkit/VOC2012/link"}[kind])
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_a_member_that_would_land_outside_is_refused_by_name(tmp_path, voc_source, kind):
    message = assemble_fails(tmp_path, voc_source, sbd=escaping_tar(kind))
    assert "benchmark.tgz" in message and "refused" in message
    assert {"dotdot": "evil.txt", "absolute": "/tmp/evil.txt", "symlink": "link"}[kind] in message


def test_a_list_naming_a_missing_image_is_an_error_naming_both(tmp_path, voc_source):
    members = voc_source.trainval_members(lists={"train": voc_source.voc_train + ["2099_000001"]})
    message = assemble_fails(tmp_path, voc_source, trainval=tar_bytes(members))
    assert ("VOCtrainval_11-May-2012.tar: member VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt names "
            "2099_000001") in message


def test_a_mask_whose_size_differs_from_its_image_is_an_error_naming_both(tmp_path, voc_source):
    bad = voc_source.sbd_train[-2]
    sbd = voc_source.sbd_members(mask_of=lambda name: np.zeros((7, 9), np.uint8) if name == bad
                                 else voc_source.label(name))
    message = assemble_fails(tmp_path, voc_source, sbd=tar_bytes(sbd, "w:gz"))
    height, width = voc_source.label(bad).shape
    assert (f"benchmark.tgz: member benchmark_RELEASE/dataset/cls/{bad}.mat: mask size 9x7 differs from its image "
            f"VOCtrainval_11-May-2012.tar: member VOCdevkit/VOC2012/JPEGImages/{bad}.jpg ({width}x{height})") in message


def test_a_mat_file_that_is_not_an_sbd_mask_is_an_error_naming_it(tmp_path, voc_source):
    bad = voc_source.sbd_train[0]
    members = voc_source.sbd_members()
    members[f"benchmark_RELEASE/dataset/cls/{bad}.mat"] = b"not a MATLAB file"
    message = assemble_fails(tmp_path, voc_source, sbd=tar_bytes(members, "w:gz"))
    assert f"benchmark.tgz: member benchmark_RELEASE/dataset/cls/{bad}.mat is not an SBD class mask" in message


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def with_value(label: np.ndarray, value: int) -> np.ndarray:
    label = label.copy()
    label[0, 0] = value
    return label


def size_text(voc_source, name: str) -> str:
    height, width = voc_source.label(name).shape
    return f"{width}x{height}"


# A fault planted in one member -> (role, member, its new bytes, what the error says right after "ARCHIVE: member
# MEMBER"). The truncated images, the VOC masks and the saliency map used to pass the assembly and fail only the
# index, leaving a dataset root (with prepared.json) that the next run took as prepared.
VOC = "VOCdevkit/VOC2012"
SBD = "benchmark_RELEASE/dataset"
PLANTED_FAULTS = {
    "truncated VOC image": lambda s: (
        "trainval", f"{VOC}/JPEGImages/{s.val[0]}.jpg", truncated(s.image(s.val[0])), " cannot be decoded (truncated"),
    "VOC mask with a value outside the classes": lambda s: (
        "trainval", f"{VOC}/SegmentationClass/{s.voc_train[0]}.png",
        png_bytes(with_value(s.voc_mask(s.voc_train[0]), 50)), ": label value(s) [50] outside the classes 0..20"),
    "VOC mask of another size": lambda s: (
        "trainval", f"{VOC}/SegmentationClass/{s.val[1]}.png", png_bytes(np.zeros((7, 9))),
        f": size 9x7 differs from its image {ROLES['trainval']}: member {VOC}/JPEGImages/{s.val[1]}.jpg "
        f"({size_text(s, s.val[1])})"),
    "unparsable annotation": lambda s: (
        "trainval", f"{VOC}/Annotations/{s.voc_train[1]}.xml", b"<annotation>", " cannot be parsed"),
    "split list naming an image twice": lambda s: (
        "trainval", f"{VOC}/ImageSets/Segmentation/val.txt", "".join(f"{n}\n" for n in s.val + s.val[:1]).encode(),
        f":{len(s.val) + 1}: '{s.val[0]}' is listed twice"),
    "SBD mask with a value outside the classes": lambda s: (
        "sbd", f"{SBD}/cls/{s.sbd_only}.mat", mat_bytes(with_value(s.label(s.sbd_only), 50)),
        ": label value(s) [50] outside the classes 0..20"),
    "truncated SBD image": lambda s: (
        "sbd", f"{SBD}/img/{s.sbd_only}.jpg", truncated(s.image(s.sbd_only)), " cannot be decoded (truncated"),
    "truncated test image": lambda s: (
        "test", f"{VOC}/JPEGImages/{s.test[0]}.jpg", truncated(s.image(s.test[0])), " cannot be decoded (truncated"),
    "saliency map of another size": lambda s: (
        "saliency", f"saliency_maps/{s.train_aug[0]}.png", png_bytes(np.zeros((7, 9))),
        f": size 9x7 differs from its image {s.train_aug[0]} ({size_text(s, s.train_aug[0])})"),
}


@pytest.mark.parametrize("fault", PLANTED_FAULTS)
def test_a_bad_member_fails_the_assembly_naming_the_archive_and_the_member(tmp_path, voc_source, fault):
    role, member, data, says = PLANTED_FAULTS[fault](voc_source)
    archive = with_member(voc_source.archives()[ROLES[role]], member, data)
    message = assemble_fails(tmp_path, voc_source, **{role: archive})
    assert f"{ROLES[role]}: member {member}{says}" in message


@pytest.mark.parametrize("cut", ["inside a member", "at a member's boundary"])
def test_a_damaged_archive_is_named_with_the_member_it_breaks_at(tmp_path, voc_source, cut):
    archive = voc_source.archives()[ROLES["trainval"]]
    members = tarfile.open(fileobj=io.BytesIO(archive)).getmembers()
    middle = members[len(members) // 2]
    # a cut at a header reads, to tarfile, as a whole shorter archive: only the missing end block tells
    end = middle.offset_data + middle.size // 2 if cut == "inside a member" else middle.offset
    message = assemble_fails(tmp_path, voc_source, trainval=archive[:end])
    assert "cannot be extracted" in message and "is the archive whole?" in message
    if cut == "inside a member":
        assert f"{ROLES['trainval']}: member {middle.name} cannot" in message
    else:
        assert f"{ROLES['trainval']}: the member after {members[len(members) // 2 - 1].name} cannot" in message


def test_sbd_masks_read_as_written(tmp_path):
    label = np.random.default_rng(0).integers(0, 21, size=(5, 7)).astype(np.uint8)
    (tmp_path / "x.mat").write_bytes(mat_bytes(label))
    assert np.array_equal(voc2012.read_sbd_mask(tmp_path / "x.mat"), label)


@pytest.fixture(scope="module")
def coco_source(voc_source):
    return COCOArchives(voc_source.source)


def test_coco_instances_become_class_masks_lists_and_tags(coco_source, tmp_path):
    paths = write_archives(tmp_path / "downloads", coco_source.archives(), COCO_ROLES)
    counts = coco2014.assemble(paths, tmp_path / "coco", workers=2)
    root = tmp_path / "coco"
    assert read_name_list(root / "classes.txt") == ["background", *coco_source.class_names]
    for split in ("train", "val"):
        names = read_name_list(root / f"ImageSets/Segmentation/{split}.txt")
        assert names == coco_source.listed(split) and counts["splits"][split] == len(names)
        tags = read_class_list(root / f"ImageSets/Segmentation/{split}_cls.txt")
        for index, original in enumerate(coco_source.splits[split][: len(names)]):
            name = coco_source.coco_name(split, index)
            label = read_label_png(root / "SegmentationClass" / f"{name}.png")
            assert np.array_equal(label, coco_source.label(original))  # ids with gaps -> labels in id order
            assert tags[name] == sorted(int(v) - 1 for v in np.unique(label) if 0 < v < 255)
            assert (root / "JPEGImages" / f"{name}.jpg").is_file()
    assert counts["left_out"] == {"train": 1, "val": 0}
    assert not list(root.glob("_unpacked-*")) and not (root / "saliency").exists()


def test_coco_without_its_annotation_file_is_an_error_naming_it(coco_source, tmp_path):
    archives = coco_source.archives()
    archives["annotations_trainval2014.zip"] = zip_of({"annotations/instances_train2014.json":
                                                        json.dumps(coco_source.instances("train")).encode()})
    paths = write_archives(tmp_path / "downloads", archives, COCO_ROLES)
    with pytest.raises(ArtifactError, match="instances_val2014.json is missing"):
        coco2014.assemble(paths, tmp_path / "coco")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


def coco_assemble_fails(tmp_path, coco_source, archive: str, member: str, data: bytes) -> str:
    """Assemble COCO with one member of an archive replaced; return the error (archives named by file name),
    after checking nothing is left and that the error names no temporary path."""
    archives = coco_source.archives()
    archives[archive] = with_member(archives[archive], member, data)
    paths = write_archives(tmp_path / "downloads", archives, COCO_ROLES)
    with pytest.raises(ArtifactError) as error:
        coco2014.assemble(paths, tmp_path / "coco", workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]
    assert names_no_temporary(str(error.value)), str(error.value)
    return str(error.value).replace(f"{tmp_path / 'downloads'}/", "")


def test_a_truncated_coco_image_fails_the_assembly_naming_the_archive_and_the_member(coco_source, tmp_path):
    member = f"val2014/{coco_source.coco_name('val', 1)}.jpg"
    original = coco_source.source / "JPEGImages" / f"{coco_source.splits['val'][1]}.jpg"
    message = coco_assemble_fails(tmp_path, coco_source, "val2014.zip", member, truncated(original.read_bytes()))
    assert f"val2014.zip: member {member} cannot be decoded (truncated" in message
    assert "annotations_trainval2014.zip: member annotations/instances_val2014.json" in message


def test_a_coco_saliency_map_of_another_size_fails_the_assembly_naming_the_member(coco_source, tmp_path):
    from dataset_archives import zip_bytes

    names = coco_source.listed("train")
    maps = {f"maps/{name}.png": png_bytes(np.zeros(coco_source.label(coco_source.splits["train"][0]).shape))
            for name in names}
    maps[f"maps/{names[1]}.png"] = png_bytes(np.zeros((7, 9)))
    archives = {**coco_source.archives(), "saliency_coco.zip": zip_bytes(maps)}
    paths = write_archives(tmp_path / "downloads", archives, {**COCO_ROLES, "saliency": "saliency_coco.zip"})
    with pytest.raises(ArtifactError) as error:
        coco2014.assemble(paths, tmp_path / "coco")
    width, height = coco_source.label(coco_source.splits["train"][1]).shape[::-1]
    assert (f"saliency_coco.zip: member maps/{names[1]}.png: size 9x7 differs from its image {names[1]} "
            f"({width}x{height})") in str(error.value)
    assert names_no_temporary(str(error.value)) and sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


@pytest.mark.parametrize("category, says", [
    ({"id": 12, "name": "street sign"}, "category id 12 ('street sign') is not one of COCO's 80 thing categories"),
    ({"id": 3, "name": "automobile"}, "category id 3 is named 'automobile'; COCO's category 3 is 'car'"),
])
def test_a_category_that_is_not_one_of_cocos_80_is_refused_by_id_name_and_file(coco_source, tmp_path, category,
                                                                                  says):
    instances = coco_source.instances("val")
    instances["categories"] = [c for c in instances["categories"] if c["id"] != category["id"]] + [category]
    member = "annotations/instances_val2014.json"
    message = coco_assemble_fails(tmp_path, coco_source, "annotations_trainval2014.zip", member,
                                  json.dumps(instances).encode())
    assert f"annotations_trainval2014.zip: member {member}: {says}" in message


def zip_of(members):
    from dataset_archives import zip_bytes

    return zip_bytes(members)


# The workflow, from the server to a benchmark.


def loopback_config(workdir, server_url, archives, name="vocloop", experiments=("cam",), source="voc2012"):
    """config/tiny.yaml on the archives served at `server_url`. VOC: train_aug, scored on train, val, test,
    saliency-guided pseudo labels (the EPS/OAA mode, from the served maps); COCO: train, val."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["pseudo_labels"] = {**config["pseudo_labels"], **({"mode": "saliency", "bg_power": 4} if source == "voc2012"
                                                               else {"mode": "crf"})}
    if source == "voc2012":
        config["dataset"] = {"name": name, "source": source, "root": f"resources/{name}", "train_split": "train_aug",
                             "score_split": "train", "val_split": "val", "test_split": "test",
                             "masks": {"train_aug": "SegmentationClassAug"}, "archives": dict(ROLES)}
    else:
        config["dataset"] = {"name": name, "source": source, "root": f"resources/{name}", "train_split": "train",
                             "val_split": "val", "test_split": None, "archives": dict(COCO_ROLES)}
    config["downloads"] = downloads_section(server_url, archives)
    config["pretrain"] = {"images": 0}
    config["experiments"] = {experiment: config["experiments"][experiment] for experiment in experiments}
    path = workdir / "loopback.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def weights_file(config_path) -> bytes:
    """The classifier's starting weights as a torchvision-style .pth of the tiny config's VGG."""
    import torch

    from wsss.models.backbones import VGG16OS8

    config = yaml.safe_load(config_path.read_text())["classifier"]["backbone"]
    torch.manual_seed(0)
    buffer = io.BytesIO()
    network = VGG16OS8(width=config["width"], batch_norm=config["batch_norm"], convs=tuple(config["convs"]))
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_the_workflow_downloads_assembles_and_runs_voc_from_a_server(tmp_path, voc_source):
    """Download (a cut, then resumed), verify, extract, convert, index, train, evaluate, predict the test split;
    a mirror with other archives of the same content gives the same dataset."""
    archives = voc_source.archives()
    server = Server({})
    try:
        config_path = loopback_config(tmp_path, server.url, archives)
        config = yaml.safe_load(config_path.read_text())
        weights = weights_file(config_path)
        config["downloads"]["vgg-tiny.pth"] = {"url": f"{server.url}/vgg-tiny.pth", "sha256": sha256(weights)}
        config["classifier"]["backbone"]["weights"] = "resources/downloads/vgg-tiny.pth"
        config_path.write_text(yaml.safe_dump(config))
        server.files = {f"/{name}": data for name, data in {**archives, "vgg-tiny.pth": weights}.items()}

        server.cut_after = len(archives["VOCtrainval_11-May-2012.tar"]) // 2  # the first response stops halfway
        cut = snakemake(tmp_path, "resources/downloads/VOCtrainval_11-May-2012.tar", "--configfile", str(config_path))
        log = (tmp_path / "results/logs/download-VOCtrainval_11-May-2012.tar.log").read_text()
        assert cut.returncode != 0 and "run again to resume" in log
        assert (tmp_path / "resources/downloads/VOCtrainval_11-May-2012.tar.part").is_file()

        result = snakemake(tmp_path, "--configfile", str(config_path))
        assert result.returncode == 0, result.stderr[-5000:]
        fetched = sorted(path.name for path in (tmp_path / "resources/downloads").iterdir())
        assert fetched == sorted([*ROLES.values(), "vgg-tiny.pth"])  # the saliency maps too: the EPS/OAA mode
        total = sum(path.stat().st_size for path in (tmp_path / "resources/downloads").iterdir())
        assert total <= server.sent <= total + 4096  # the cut file was resumed, not fetched again
    finally:
        server.stop()

    results = tmp_path / "results"
    prepared = json.loads((tmp_path / "resources/vocloop/prepared.json").read_text())
    assert prepared["splits"]["train_aug"] == len(voc_source.train_aug)
    manifest = json.loads((results / "vocloop/dataset/manifest.json").read_text())
    assert len(manifest["splits"]["train_aug"]["names"]) == len(voc_source.train_aug)
    assert manifest["mask_dirs"]["train_aug"] == "SegmentationClassAug"
    table = (results / "benchmark.csv").read_text()
    assert "cam" in table
    with tarfile.open(results / "vocloop/cam/test_predictions.tar.gz") as tar:
        names = sorted(tar.getnames())
    assert names == [f"results/VOC2012/Segmentation/comp6_test_cls/{n}.png" for n in voc_source.test]
    log = (results / "vocloop/cam/logs/train_classifier.log").read_text()
    assert f"backbone starts from resources/downloads/vgg-tiny.pth (sha256 {sha256(weights)})" in log

    # A mirror: other archives (gzip, members in the other order) of the same files, their own pins.
    other = voc_source.archives(compression="gz", reverse=True)
    assert all(other[name] != archives[name] for name in archives)
    mirror = Server({f"/{name}": data for name, data in other.items()})
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        mirror_config = loopback_config(elsewhere, mirror.url, other)
        result = snakemake(elsewhere, "results/vocloop/dataset/manifest.json", "--configfile", str(mirror_config))
        assert result.returncode == 0, result.stderr[-5000:]
    finally:
        mirror.stop()
    mirrored = json.loads((elsewhere / "results/vocloop/dataset/manifest.json").read_text())
    assert mirrored["content_sha256"] == manifest["content_sha256"]


@pytest.mark.slow
def test_a_bad_member_stops_the_prepare_rule_naming_it_on_the_console_and_leaves_no_dataset(tmp_path, voc_source):
    """A truncated image in the pinned trainval archive: the prepare rule fails (not the index, after it), the
    console says which member, and no dataset root is left for the next run to take as prepared."""
    name = voc_source.val[0]
    archives = voc_source.archives()
    member = f"{VOC}/JPEGImages/{name}.jpg"
    archives[ROLES["trainval"]] = with_member(archives[ROLES["trainval"]], member, truncated(voc_source.image(name)))
    server = Server({f"/{archive}": data for archive, data in archives.items()})
    try:
        config_path = loopback_config(tmp_path, server.url, archives)
        result = snakemake(tmp_path, "results/vocloop/dataset/manifest.json", "--configfile", str(config_path))
    finally:
        server.stop()
    assert result.returncode != 0
    console = result.stdout + result.stderr
    assert "Error in rule prepare_dataset" in console and "Error in rule index_dataset" not in console
    assert (f"ArtifactError: resources/downloads/{ROLES['trainval']}: member {member} cannot be decoded "
            f"(truncated") in console
    assert not (tmp_path / "resources/vocloop").exists() and not list((tmp_path / "resources").glob(".vocloop*"))


@pytest.mark.slow
def test_a_wrong_pin_stops_the_download_naming_file_and_hashes(tmp_path, voc_source):
    archives = voc_source.archives()
    server = Server({f"/{name}": data for name, data in archives.items()})
    try:
        config_path = loopback_config(tmp_path, server.url, archives)
        config = yaml.safe_load(config_path.read_text())
        config["downloads"]["benchmark.tgz"]["sha256"] = "0" * 64
        config_path.write_text(yaml.safe_dump(config))
        result = snakemake(tmp_path, "results/vocloop/dataset/manifest.json", "--keep-going", "--configfile",
                           str(config_path))
    finally:
        server.stop()
    assert result.returncode != 0
    log = (tmp_path / "results/logs/download-benchmark.tgz.log").read_text()
    assert f"has sha256 {sha256(archives['benchmark.tgz'])}, expected {'0' * 64}" in log
    assert not (tmp_path / "resources/downloads/benchmark.tgz").exists()
    assert (tmp_path / "resources/downloads/benchmark.tgz.part").is_file()
    assert (tmp_path / "resources/downloads/VOCtrainval_11-May-2012.tar").is_file()  # the others are fetched
    assert not (tmp_path / "resources/vocloop").exists()


@pytest.mark.slow
def test_the_workflow_downloads_assembles_and_runs_coco_from_a_server(tmp_path, coco_source):
    archives = coco_source.archives()
    server = Server({f"/{name}": data for name, data in archives.items()})
    try:
        config_path = loopback_config(tmp_path, server.url, archives, name="cocoloop", source="coco2014")
        result = snakemake(tmp_path, "--configfile", str(config_path))
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-5000:]
    prepared = json.loads((tmp_path / "resources/cocoloop/prepared.json").read_text())
    assert prepared["splits"] == {"train": len(coco_source.listed("train")), "val": len(coco_source.listed("val"))}
    metrics = json.loads((tmp_path / "results/cocoloop/cam/metrics/segmentation_val.json").read_text())
    assert 0 < metrics["miou"] <= 1
    assert "cam" in (tmp_path / "results/benchmark.csv").read_text()
