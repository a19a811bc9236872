"""Downloads from an HTTP server on 127.0.0.1 (resume after a cut, pins checked) and safe archive extraction."""

import hashlib
import io
import os
import random
import tarfile
import zipfile

import pytest
from dataset_archives import Server

from wsss.core.artifacts import ArtifactError
from wsss.data.sources.download import DownloadError, extract, fetch, partial_path

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    served = Server({"/data.bin": PAYLOAD})
    yield served
    served.stop()


def test_a_cut_connection_keeps_the_partial_file_and_the_next_call_resumes_it(server, tmp_path):
    destination = tmp_path / "data.bin"
    server.cut_after = 1024 * 1024
    with pytest.raises(DownloadError, match=r"downloads\.archive: fetching .* failed .* 1048576 bytes are kept in "
                                            r".*data\.bin\.part: run again to resume"):
        fetch("archive", f"{server.url}/data.bin", destination, PAYLOAD_SHA256, len(PAYLOAD))
    assert not destination.exists() and partial_path(destination).stat().st_size == 1024 * 1024
    received = fetch("archive", f"{server.url}/data.bin", destination, PAYLOAD_SHA256, len(PAYLOAD))
    assert destination.read_bytes() == PAYLOAD and not partial_path(destination).exists()
    assert received == len(PAYLOAD) - 1024 * 1024
    assert server.sent == len(PAYLOAD)  # in all: the file once, not once and a third


def test_a_wrong_pin_names_file_and_hashes_and_the_file_is_never_taken_as_done(server, tmp_path):
    destination = tmp_path / "data.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=rf"data\.bin has sha256 {PAYLOAD_SHA256}, expected {wrong}; kept as "):
        fetch("archive", f"{server.url}/data.bin", destination, wrong)
    assert not destination.exists() and partial_path(destination).exists()
    sent = server.sent
    fetch("archive", f"{server.url}/data.bin", destination, PAYLOAD_SHA256)  # the pin corrected: checked again
    assert destination.read_bytes() == PAYLOAD and server.sent == sent  # without downloading it anew


def test_an_unset_url_says_where_to_set_it_and_a_local_copy_serves(tmp_path):
    with pytest.raises(DownloadError, match=r"downloads\.saliency\.url is not set: .*file:///"):
        fetch("saliency", None, tmp_path / "saliency.zip", PAYLOAD_SHA256)
    copy = tmp_path / "mirror" / "data.bin"
    copy.parent.mkdir()
    copy.write_bytes(PAYLOAD)
    fetch("archive", copy.as_uri(), tmp_path / "data.bin", PAYLOAD_SHA256, len(PAYLOAD))
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def tar_with(tmp_path, *members: tarfile.TarInfo, data: bytes = b"x") -> str:
    path = tmp_path / "archive.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def tar_member(name: str, kind=tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.size = kind, target, 1 if kind == tarfile.REGTYPE else 0
    return member


def test_a_tar_extracts_as_a_whole_folder(tmp_path):
    archive = tar_with(tmp_path, tar_member("VOCdevkit/VOC2012/JPEGImages/a.jpg"),
                       tar_member("VOCdevkit/VOC2012/ImageSets/x.txt"))
    extract(archive, tmp_path / "out")
    assert (tmp_path / "out/VOCdevkit/VOC2012/JPEGImages/a.jpg").read_bytes() == b"x"


@pytest.mark.parametrize("member", [
    tar_member("../escape.txt"),
    tar_member("/etc/escape.txt"),
    tar_member("VOCdevkit/link", tarfile.SYMTYPE, "../../outside"),
    tar_member("VOCdevkit/dev", tarfile.CHRTYPE),
], ids=["dot-dot", "absolute", "link out", "device"])
def test_a_tar_member_that_would_escape_is_refused_by_name_and_nothing_is_extracted(tmp_path, member):
    archive = tar_with(tmp_path, tar_member("VOCdevkit/ok.txt"), member)
    with pytest.raises(ArtifactError, match=rf"archive\.tar\.gz: member '{member.name}' refused") as error:
        extract(archive, tmp_path / "out")
    assert ".out.tmp-" not in str(error.value)  # the folder being filled, removed: not named
    assert sorted(path.name for path in tmp_path.iterdir()) == ["archive.tar.gz"]  # no folder, no temporary


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt"])
def test_a_zip_member_that_would_escape_is_refused_by_name(tmp_path, name):
    archive = tmp_path / "annotations.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("annotations/ok.json", "{}")
        zipped.writestr(zipfile.ZipInfo(name), "x")
    with pytest.raises(ArtifactError, match=rf"annotations\.zip: member '{name}' refused"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_cut_tar_is_named_with_the_member_it_breaks_at(tmp_path):
    members = [tar_member(f"VOCdevkit/VOC2012/JPEGImages/{index}.jpg") for index in range(3)]
    for member in members:
        member.size = 50_000
    path = tmp_path / "archive.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(random.Random(member.name).randbytes(member.size)))  # incompressible
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=r"archive\.tar\.gz: member VOCdevkit/VOC2012/JPEGImages/1\.jpg cannot be "
                                            r"extracted \(.+\); is the archive whole\?") as error:
        extract(path, tmp_path / "out")
    assert ".out.tmp-" not in str(error.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["archive.tar.gz"]


def test_a_zip_member_that_fails_its_checksum_is_named(tmp_path):
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("train2014/a.jpg", b"a" * 100)
        zipped.writestr("train2014/b.jpg", b"b" * 100)
    archive.write_bytes(archive.read_bytes().replace(b"b" * 100, b"b" * 99 + b"c"))
    with pytest.raises(ArtifactError, match=r"train2014\.zip: member train2014/b\.jpg cannot be extracted \(Bad CRC"):
        extract(archive, tmp_path / "out")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["train2014.zip"]


def test_a_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "images.zip"
    link = zipfile.ZipInfo("images/link")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(link, "../../etc/passwd")
    with pytest.raises(ArtifactError, match=r"member 'images/link' refused: links and special files"):
        extract(archive, tmp_path / "out")


def test_the_download_rule_takes_an_entry_of_the_config_only_once_its_pin_matches(server, tmp_path):
    import yaml
    from conftest import snakemake

    def run(sha256: str, url: str, *options: str):
        config = {"dataset": {"name": "d", "source": "synthetic", "root": "resources/d"},
                  "downloads": {"weights.pth": {"url": url, "sha256": sha256, "size": len(PAYLOAD)}}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        return snakemake(tmp_path, "resources/downloads/weights.pth", "--configfile", "config.yaml", *options)

    target = tmp_path / "resources/downloads/weights.pth"
    result = run("0" * 64, f"{server.url}/data.bin")
    assert result.returncode != 0 and not target.exists() and partial_path(target).exists()
    log = (tmp_path / "results/logs/download-weights.pth.log").read_text()
    assert f"weights.pth has sha256 {PAYLOAD_SHA256}, expected {'0' * 64}" in log
    result = run(PAYLOAD_SHA256[:8], f"{server.url}/data.bin")  # a published prefix, as torchvision's
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.read_bytes() == PAYLOAD and server.sent == len(PAYLOAD)  # checked again, not fetched again
    mirror = tmp_path / "mirror.bin"
    mirror.write_bytes(PAYLOAD)
    result = run(PAYLOAD_SHA256[:8], mirror.as_uri(), "--dry-run")  # a mirror serves the same file
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
