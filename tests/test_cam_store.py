import h5py
import numpy as np
import pytest

from wsss.cams.store import BackgroundWriter, CamWriter, cam_names, gather_cams, read_cams
from wsss.core.artifacts import ArtifactError


def write_shard(path, entries):
    with CamWriter(path) as writer:
        for name, (cams, tags) in entries.items():
            writer.write(name, cams, tags)


def test_round_trip_is_float16_chunked_compressed_with_tags(tmp_path):
    rng = np.random.default_rng(0)
    cams = rng.random((2, 30, 40)).astype(np.float32)
    write_shard(tmp_path / "s.h5", {"img_a": (cams, [3, 5]), "img_b": (np.zeros((0, 30, 40)), [])})
    back, tags = read_cams(tmp_path / "s.h5", "img_a")
    assert tags == [3, 5]
    np.testing.assert_allclose(back, cams, atol=1e-3)  # float16 precision
    with h5py.File(tmp_path / "s.h5") as handle:
        dataset = handle["img_a"]
        assert dataset.dtype == np.float16
        assert dataset.chunks == (1, 30, 40)
        assert dataset.compression == "gzip"
    empty, empty_tags = read_cams(tmp_path / "s.h5", "img_b")
    assert empty.shape == (0, 30, 40) and empty_tags == []


def test_a_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with CamWriter(tmp_path / "s.h5") as writer:
            writer.write("a", np.zeros((1, 4, 4)), [0])
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_shape_and_tags_must_agree(tmp_path):
    with CamWriter(tmp_path / "s.h5") as writer:
        with pytest.raises(ValueError, match="img"):
            writer.write("img", np.zeros((2, 4, 4)), [1])


def test_gathered_index_links_every_shard(tmp_path, monkeypatch):
    shards = tmp_path / "cams"
    shards.mkdir()
    write_shard(shards / "shard-0.h5", {"a": (np.full((1, 5, 5), 0.5), [0])})
    write_shard(shards / "shard-1.h5", {"b": (np.full((1, 5, 5), 0.25), [2]), "c": (np.zeros((1, 5, 5)), [1])})
    count = gather_cams([shards / "shard-0.h5", shards / "shard-1.h5"], shards / "cams.h5")
    assert count == 3
    monkeypatch.chdir(tmp_path)  # links resolve relative to the index, not the working directory
    assert sorted(cam_names(shards / "cams.h5")) == ["a", "b", "c"]
    cams, tags = read_cams(shards / "cams.h5", "b")
    assert tags == [2] and cams.max() == pytest.approx(0.25)
    assert (shards / "cams.h5").stat().st_size < 4096  # an index, not a copy


def test_duplicate_images_across_shards_are_refused(tmp_path):
    write_shard(tmp_path / "0.h5", {"a": (np.zeros((1, 2, 2)), [0])})
    write_shard(tmp_path / "1.h5", {"a": (np.zeros((1, 2, 2)), [0])})
    with pytest.raises(ValueError, match="two CAM shards"):
        gather_cams([tmp_path / "0.h5", tmp_path / "1.h5"], tmp_path / "cams.h5")


def test_the_background_writer_stores_every_map_and_hands_back_a_failure(tmp_path):
    maps = {f"image_{k}": np.random.default_rng(k).random((2, 8, 6)).astype(np.float32) for k in range(20)}
    with CamWriter(tmp_path / "ok.h5", expected_names=list(maps)) as store, BackgroundWriter(store, depth=3) as writer:
        for name, cams in maps.items():
            writer.write(name, cams, [1, 4])
    for name, cams in maps.items():
        stored, tags = read_cams(tmp_path / "ok.h5", name)
        np.testing.assert_allclose(stored, cams, atol=1e-3)
        assert tags == [1, 4]
    with pytest.raises(ArtifactError, match="image_2 .* not finite"):
        with CamWriter(tmp_path / "bad.h5") as store, BackgroundWriter(store) as writer:
            for k in range(5):
                writer.write(f"image_{k}", np.full((1, 4, 4), np.nan if k == 2 else 0.5, np.float32), [0])
    assert not (tmp_path / "bad.h5").exists()  # the CamWriter aborted: no partial file


def test_a_damaged_shard_found_through_the_index_is_removed_with_the_index(tmp_path):
    """So that the next run makes both again: an index left behind would name a shard that is gone."""
    shards = tmp_path / "cams"
    shards.mkdir()
    write_shard(shards / "shard-0.h5", {"a": (np.full((1, 5, 5), 0.5), [0])})
    write_shard(shards / "shard-1.h5", {"b": (np.full((1, 5, 5), 0.25), [2])})
    gather_cams([shards / "shard-0.h5", shards / "shard-1.h5"], shards / "cams.h5")
    (shards / "shard-1.h5").write_bytes((shards / "shard-1.h5").read_bytes()[:2000])
    with pytest.raises(ArtifactError, match=r"shard-1\.h5: damaged CAM shard .* Removed \S*shard-1\.h5 and "
                                            r"\S*cams\.h5: run the workflow again"):
        read_cams(shards / "cams.h5", "b")
    assert sorted(path.name for path in shards.iterdir()) == ["shard-0.h5"]
