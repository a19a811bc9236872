"""Trustworthy reruns: a resume never reuses stale work, a kill anywhere resumes to the same numbers, a run that
diverges stops, and a failed or damaged step is redone by the next plain run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from PIL import Image

from conftest import (REPO, TINY_CONFIG, Killed, copy_run, kill_after_first_checkpoint, snakemake, table_rows,
                      tiny_settings)
from wsss.core.guards import NonFiniteError


def state_of(path):
    return torch.load(path, weights_only=True)["model"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def save_backbone(path, seed):
    from wsss.models.backbones import VGG16OS8

    torch.manual_seed(seed)
    torch.save(VGG16OS8(width=0.125, batch_norm=True).state_dict(), path)


def test_changed_starting_weights_never_resume_a_checkpoint(tiny_dataset, tmp_path, monkeypatch, caplog):
    """Same path, other content: the run killed with the old weights is not resumed; the result is that of a
    run from scratch with the new weights, not the old one."""
    from wsss.classifier.train import train_classifier

    weights = tmp_path / "backbone.pt"
    settings = tiny_settings(classifier={"backbone": {"weights": str(weights)}})
    save_backbone(weights, seed=1)
    train_classifier(tiny_dataset, "train", settings, tmp_path / "old.pt", tmp_path / "old.json", tmp_path / "c0")
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_classifier(tiny_dataset, "train", settings, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "c")
    save_backbone(weights, seed=2)  # e.g. pretraining ran again with other settings
    train_classifier(tiny_dataset, "train", settings, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "c")
    assert "set aside as last.pt.stale: its starting_weights differs" in caplog.text
    train_classifier(tiny_dataset, "train", settings, tmp_path / "new.pt", tmp_path / "new.json", tmp_path / "c2")
    assert same_weights(state_of(tmp_path / "m.pt"), state_of(tmp_path / "new.pt"))
    assert not same_weights(state_of(tmp_path / "m.pt"), state_of(tmp_path / "old.pt"))


def test_a_finished_run_leaves_no_checkpoint_to_resume(tiny_dataset, tmp_path, caplog):
    """What --forcerun or a rerun with other inputs gets: training from scratch, never the finished checkpoint."""
    from wsss.data.voc import VOCLayout
    from wsss.segmentation.train import train_segmentation

    layout = VOCLayout(tiny_dataset)
    labels = {name: layout.label_path(name) for name in layout.names("train")}
    settings = tiny_settings()
    train_segmentation(tiny_dataset, labels, settings, tmp_path / "a.pt", tmp_path / "a.json", tmp_path / "c")
    assert not (tmp_path / "c").exists()
    train_segmentation(tiny_dataset, labels, settings, tmp_path / "b.pt", tmp_path / "b.json", tmp_path / "c")
    assert "resuming" not in caplog.text
    assert same_weights(state_of(tmp_path / "a.pt"), state_of(tmp_path / "b.pt"))  # and it is deterministic


def test_a_diverging_classifier_stops_at_the_first_non_finite_loss_keeping_its_checkpoint(tiny_dataset, tmp_path):
    from wsss.classifier.train import train_classifier

    # epoch 0 at the usual LR (its checkpoint is written), then an LR of 1e28 from epoch 1
    settings = tiny_settings(classifier={"lr_milestones": [1], "lr_gamma": 1e30})
    with pytest.raises(NonFiniteError) as error:
        train_classifier(tiny_dataset, "train", settings, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "c")
    message = str(error.value)
    assert message.startswith("classifier training (cam): the ") and "at epoch 1 step" in message
    assert "last finite loss" in message and "at epoch " in message.split("last finite loss")[1]
    assert torch.load(tmp_path / "c" / "last.pt", weights_only=True)["epoch"] == 0  # from before the blow-up
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "h.json").exists()


def test_a_diverging_deeplab_stops_naming_the_iteration(tiny_dataset, tmp_path):
    from wsss.data.voc import VOCLayout
    from wsss.segmentation.train import train_segmentation

    layout = VOCLayout(tiny_dataset)
    labels = {name: layout.label_path(name) for name in layout.names("train")}
    with pytest.raises(NonFiniteError, match=r"DeepLab-v2 training \(cam\): the (loss|gradient) is not finite at "
                                             r"iteration \d+ .*last finite loss \S+ at iteration \d+"):
        train_segmentation(tiny_dataset, labels, tiny_settings(segmentation={"lr": 1e6}), tmp_path / "m.pt",
                           tmp_path / "h.json", tmp_path / "c")
    assert not (tmp_path / "m.pt").exists()


def test_the_code_version_follows_the_code_not_its_comments(tmp_path):
    from wsss.core.code_version import code_version

    versions = []
    crf, metrics = "import wsss.pseudo_labels.crf\n", "import wsss.evaluation.metrics\n"
    for number, text in enumerate((f"{crf}x = 1\n", f'"""Docstring."""\n{crf}\nx = 1  # a comment\n', f"{crf}x = 2\n",
                                   f"{metrics}x = 2\n")):
        script = tmp_path / str(number) / "stage.py"  # the same name: the version does not depend on the folder
        script.parent.mkdir()
        script.write_text(text)
        versions.append(code_version(str(script)))
    assert versions[0] == versions[1]  # comments, docstrings, blank lines
    assert len({versions[1], versions[2], versions[3]}) == 3  # the code, and the modules it imports


def test_the_index_check_stays_while_files_are_unchanged_and_names_a_changed_one(tiny_dataset, tmp_path):
    import shutil

    from wsss.data.manifest import NEW, build_manifest, index_check, write_manifest

    root = shutil.copytree(tiny_dataset, tmp_path / "data")
    manifest = tmp_path / "manifest.json"
    assert index_check(manifest, root) == NEW
    write_manifest(build_manifest(root, ["train", "val"], created_with=NEW), manifest)
    assert index_check(manifest, root) == NEW  # what Snakemake recorded: no rerun
    image = root / "JPEGImages" / "train_000001.jpg"
    image.write_bytes(image.read_bytes())  # same content, written again
    changed = index_check(manifest, root)
    assert changed.startswith("changed since indexed: ") and "train_000001.jpg changed" in changed
    write_manifest(build_manifest(root, ["train", "val"], created_with=changed), manifest)  # the rerun
    assert index_check(manifest, root) == changed


def written_folder(folder: Path, files: dict[str, bytes], created_with: str) -> Path:
    from wsss.core.artifacts import atomic_directory, record_folder

    with atomic_directory(folder) as temporary:
        for name, data in files.items():
            (temporary / name).write_bytes(data)
        record_folder(temporary, created_with)
    (folder / ".snakemake_timestamp").touch()  # what Snakemake adds to a directory output it finished
    return folder


def test_the_folder_check_stays_while_files_are_unchanged_and_names_a_changed_one(tmp_path):
    from wsss.core.artifacts import NEW, folder_check, remove_path

    shard = tmp_path / "shard-1-of-2"
    assert folder_check(shard) == NEW
    value, seen = NEW, []
    # the same file changed twice (each after the rerun the first change caused), a file removed, one added
    for change in (lambda: (shard / "a.png").write_bytes(b"label A"), lambda: (shard / "a.png").write_bytes(b"label A"),
                   lambda: (shard / "b.png").unlink(), lambda: (shard / "c.png").write_bytes(b"label c")):
        remove_path(shard)  # the rerun the last change caused, made with the check's value at its plan
        written_folder(shard, {"a.png": b"label a", "b.png": b"label b", "labels.sha256": b"list"}, created_with=value)
        assert folder_check(shard) == value  # what Snakemake recorded: no rerun
        change()
        value = folder_check(shard)
        assert value.startswith("changed since written: shard-1-of-2/") and value not in [NEW, *seen], value
        seen.append(value)
    assert [value.split(" (")[0].removeprefix("changed since written: ") for value in seen] == [
        "shard-1-of-2/a.png changed", "shard-1-of-2/a.png changed", "shard-1-of-2/b.png was removed",
        "shard-1-of-2/c.png was added"]


def test_a_changed_pseudo_label_found_through_the_index_removes_its_shard_and_the_index(tmp_path):
    """So that the next plain run makes both again (the index would name a shard that is gone)."""
    from wsss.core.artifacts import ArtifactError, file_sha256
    from wsss.pseudo_labels.store import read_label_index, write_label_index

    shards = [tmp_path / "pseudo_labels" / f"shard-{k}-of-2" for k in range(2)]
    for k, shard in enumerate(shards):
        shard.mkdir(parents=True)
        (shard / f"image_{k}.png").write_bytes(f"label {k}".encode())
        (shard / "labels.sha256").write_text(f"{file_sha256(shard / f'image_{k}.png')}  image_{k}.png\n")
    index = tmp_path / "pseudo_labels" / "index.txt"
    write_label_index(shards, index)
    (shards[1] / "image_1.png").write_bytes(b"label 7")
    with pytest.raises(ArtifactError, match=r"shard-1-of-2: pseudo label \S*image_1\.png changed after the shard was "
                                            r"written\. Removed \S*shard-1-of-2 and \S*index\.txt"):
        read_label_index(index)
    assert sorted(path.name for path in index.parent.iterdir()) == ["shard-0-of-2"]


def test_a_killed_writer_leaves_a_temporary_the_next_write_removes(tmp_path):
    from wsss.core.artifacts import write_json

    target = tmp_path / "metrics.json"
    (tmp_path / ".metrics.json.tmp-otherhost-4242").write_text("half")
    (tmp_path / ".other.json.tmp-host-1").write_text("not ours")
    write_json(target, {"miou": 0.5})
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.json.tmp-host-1", "metrics.json"]


# --- the workflow ------------------------------------------------------------------------------------------

# where a run is killed, in this order: a path (glob) that exists only while the stage is under way
# The kill test runs the tiny config's `cam` experiment (every stage, half the jobs of the whole config); its rows of
# the table are compared with the uninterrupted run's.
KILLED_EXPERIMENT = "cam"
KILLED_RUN = ("--config", f"run=[{KILLED_EXPERIMENT}]")
KILL_POINTS = (
    ("pretraining", ["results/tiny/pretrain/checkpoints/classifier/last.pt"]),
    ("classifier", ["results/tiny/cam/checkpoints/classifier/last.pt"]),
    ("CAM extraction", ["results/tiny/cam/cams/.shard-*.tmp-*"]),
    ("pseudo labels", ["results/tiny/*/pseudo_labels/.shard-*.tmp-*"]),
    ("DeepLab-v2", ["results/tiny/*/checkpoints/segmentation/last.pt"]),
)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL Snakemake, its process group and every process it started, as a crash or `kill -9` would."""
    family = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGKILL)
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()


def run_until(workdir: Path, patterns: list[str], env: dict) -> str:
    """Start the workflow (resuming what is incomplete) and SIGKILL it once a path matches; return that path."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
               str(workdir), "--cores", "2", "--configfile", str(TINY_CONFIG), *KILLED_RUN, "--rerun-incomplete"]
    with open(workdir / "run.log", "a") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=log, start_new_session=True,
                                   env={**os.environ, **env})
    deadline = time.time() + 600
    while time.time() < deadline:
        found = [path for pattern in patterns for path in workdir.glob(pattern)]
        if found:
            kill_tree(process)
            return str(found[0].relative_to(workdir))
        if process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before any of {patterns} appeared")
        time.sleep(0.02)
    kill_tree(process)
    raise AssertionError(f"none of {patterns} appeared in 10 minutes")


@pytest.mark.slow
def test_killed_in_every_stage_and_resumed_the_benchmark_is_the_uninterrupted_one(tiny_run, tmp_path):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    slow = {"PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "slowdown"), os.environ.get("PYTHONPATH", "")])}
    for stage, patterns in KILL_POINTS:
        seen = run_until(workdir, patterns, slow)
        print(f"killed in {stage} at {seen}")
        unlock = snakemake(workdir, "--configfile", str(TINY_CONFIG), *KILLED_RUN, "--unlock")
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG), *KILLED_RUN, "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-5000:]
    assert table_rows(workdir) == [row for row in table_rows(tiny_run) if row["experiment"] == KILLED_EXPERIMENT]
    assert not list(workdir.glob("results/**/.*.tmp-*")) and not list(workdir.rglob("last.pt*"))



def config_with(path: Path, **sections) -> Path:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    for section, values in sections.items():
        config[section].update(values)
    path.write_text(yaml.safe_dump(config))
    return path


def job_counts(output: str) -> dict[str, int]:
    """{rule: jobs} of a run's or a dry run's "Job stats" table."""
    table = output[output.index("Job stats"):].split("\n\n")[0]
    return {fields[0]: int(fields[1]) for fields in map(str.split, table.splitlines()[3:]) if len(fields) == 2
            and fields[0] != "total"}


def plain_run_gives_the_uninterrupted_table(workdir: Path, tiny_run: Path) -> dict[str, int]:
    """`snakemake` with nothing but the config: it completes, and its table is the uninterrupted run's. Returns the
    jobs it ran."""
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stderr[-5000:]
    assert (workdir / "results/benchmark.csv").read_text() == (tiny_run / "results/benchmark.csv").read_text()
    output = result.stdout + result.stderr
    return job_counts(output) if "Job stats" in output else {}


@pytest.mark.slow
def test_a_diverging_deeplab_leaves_nothing_of_the_model_it_replaced_and_a_plain_rerun_redoes_it(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    absurd = config_with(tmp_path / "absurd.yaml", segmentation={"lr": 1e6})  # diverges before its first checkpoint
    result = snakemake(workdir, "--configfile", str(absurd))
    assert result.returncode != 0
    started = [experiment for experiment in ("cam", "rca_oaa", "oracle") if f"{experiment}/logs/train_segmentation"
               in result.stderr]  # the first failure stops the run: not every DeepLab may have started
    assert started
    for experiment in started:
        results = workdir / f"results/tiny/{experiment}"
        error = next(line for line in (results / "logs/train_segmentation.log").read_text().splitlines()
                     if "NonFiniteError: " in line)
        assert f"DeepLab-v2 training ({experiment}): the" in error and "last finite loss" in error
        assert not (results / "checkpoints/segmentation/last.pt").exists()
        assert "no checkpoint was written before it" in error and "last.pt" not in error  # only files that exist
        assert not (results / "segmentation/model.pt").exists()
        # the old model's predictions and scores went with it
        assert not list(results.glob("segmentation/predictions_*")) and not list(results.glob("metrics/segmentation_*"))
        assert not list(results.glob("figures/segmentation_*"))
    assert not (workdir / "results/benchmark.csv").exists() and not (workdir / "results/benchmark.md").exists()
    redone = plain_run_gives_the_uninterrupted_table(workdir, tiny_run)  # the user fixes the config
    assert redone["train_segmentation"] == len(started)


def flip_a_byte_keeping_size_and_time(path: Path) -> None:
    """Damage as a failing disk does: the content changes, the size and modification time do not."""
    status = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.slow
def test_a_damaged_pseudo_label_is_found_by_its_reader_and_the_next_plain_run_remakes_shard_and_index(tiny_run,
                                                                                                         tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    labels = workdir / "results/tiny/cam/pseudo_labels"
    damaged = sorted((labels / "shard-1-of-2").glob("*.png"))[3]
    flip_a_byte_keeping_size_and_time(damaged)  # nothing the plan can see: found when read
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG), "--forcerun", "train_segmentation", "--",
                       "results/tiny/cam/segmentation/model.pt")
    assert result.returncode != 0
    log = (workdir / "results/tiny/cam/logs/train_segmentation.log").read_text()
    assert f"pseudo label {damaged.relative_to(workdir)} changed after the shard was written" in log
    assert not (labels / "shard-1-of-2").exists() and not (labels / "index.txt").exists()  # neither can pass on
    redone = plain_run_gives_the_uninterrupted_table(workdir, tiny_run)
    assert redone["make_pseudo_labels"] == 1 and redone["evaluate_pseudo_labels"] == 1
    assert damaged.read_bytes() == (tiny_run / damaged.relative_to(workdir)).read_bytes()


@pytest.mark.slow
def test_a_truncated_cam_shard_is_remade_with_its_index_and_what_follows_by_the_next_plain_run(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    cams = workdir / "results/tiny/cam/cams"
    shard = cams / "shard-1-of-2.h5"
    shard.write_bytes(shard.read_bytes()[:2000])
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG))  # the gather reads the shard, newer than its index
    assert result.returncode != 0
    gather_log = (workdir / "results/tiny/cam/logs/gather_cams.log").read_text()
    assert f"{shard.relative_to(workdir)}: damaged CAM shard" in gather_log
    assert not shard.exists() and not (cams / "cams.h5").exists()
    redone = plain_run_gives_the_uninterrupted_table(workdir, tiny_run)  # not only the table: the shard, and after it
    assert redone["extract_cams"] == 1 and redone["gather_cams"] == 1 and redone["make_pseudo_labels"] == 2


@pytest.mark.slow
def test_pseudo_labels_changed_in_a_shard_left_whole_are_seen_by_the_plan_and_remade(tiny_run, tmp_path):
    """One label replaced by another image's, its list rewritten to match; in the other shard one removed with its
    line: each shard is consistent, and the index's hashes are what is stale."""
    from wsss.core.artifacts import file_sha256

    workdir = copy_run(tiny_run, tmp_path / "run")
    labels = workdir / "results/tiny/cam/pseudo_labels"
    replaced, other = sorted((labels / "shard-1-of-2").glob("*.png"))[:2]
    replaced.write_bytes(other.read_bytes())
    removed = sorted((labels / "shard-0-of-2").glob("*.png"))[2]
    removed.unlink()
    for shard, name, digest in ((labels / "shard-1-of-2", replaced.name, file_sha256(replaced)),
                                (labels / "shard-0-of-2", removed.name, None)):
        listing = shard / "labels.sha256"
        lines = [line for line in listing.read_text().splitlines() if not line.endswith(f"  {name}")]
        listing.write_text("\n".join(lines + ([f"{digest}  {name}"] if digest else [])) + "\n")
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr)["make_pseudo_labels"] == 2  # not "Nothing to be done"
    redone = plain_run_gives_the_uninterrupted_table(workdir, tiny_run)
    assert redone["make_pseudo_labels"] == 2 and redone["train_segmentation"] == 1
    for path in (replaced, removed):
        assert path.read_bytes() == (tiny_run / path.relative_to(workdir)).read_bytes()


@pytest.mark.slow
def test_unreadable_weights_are_refused_by_the_plan_naming_the_file_before_any_job(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    (workdir / "weights").mkdir()
    (workdir / "weights/resnet.pth").write_bytes(np.random.default_rng(0).bytes(100_000))
    backbone = yaml.safe_load(TINY_CONFIG.read_text())["segmentation"]["backbone"]
    bad = config_with(tmp_path / "bad.yaml", segmentation={"backbone": {**backbone, "weights": "weights/resnet.pth"}})
    before = {path: path.stat().st_mtime_ns for path in (workdir / "results").rglob("*")}
    result = snakemake(workdir, "--configfile", str(bad))
    assert result.returncode != 0
    assert ("segmentation.backbone.weights: weights file weights/resnet.pth is not a readable torch file"
            in result.stderr)
    assert {path: path.stat().st_mtime_ns for path in (workdir / "results").rglob("*")} == before  # no job ran
    assert plain_run_gives_the_uninterrupted_table(workdir, tiny_run) == {}  # nothing to do


@pytest.mark.slow
def test_reordering_the_experiments_reruns_at_most_the_table(tiny_run, tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["experiments"] = dict(reversed(list(config["experiments"].items())))
    (tmp_path / "reordered.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tiny_run, "--configfile", str(tmp_path / "reordered.yaml"), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Nothing to be done" in output or set(job_counts(output)) <= {"results_table", "all"}, output[-3000:]


@pytest.mark.slow
def test_an_image_edited_in_place_reindexes_the_dataset_and_reruns_what_read_it(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    image = workdir / "resources/tiny/JPEGImages/train_000005.jpg"
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image, quality=90)
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = result.stdout + result.stderr
    jobs = plan[plan.index("Job stats"):].split("Reasons")[0]
    for rule in ("index_dataset", "train_classifier", "extract_cams", "make_pseudo_labels", "train_segmentation",
                 "results_table"):
        assert rule in jobs, rule
    assert "pretrain_backbone" not in jobs  # the pretraining set did not change
