"""The whole workflow through Snakemake, as a subprocess, on config/tiny.yaml (a few minutes)."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, TINY_CONFIG, snakemake

# the rules whose scripts run torch, and so must apply the compute settings (deterministic mode, threads)
TORCH_RULES = ("pretrain_backbone", "train_classifier", "extract_cams", "extract_val_cams", "train_segmentation",
               "evaluate_segmentation")
TORCH_FREE_RULES = ("prepare_dataset", "evaluate_cams", "tune_background", "make_pseudo_labels")


@pytest.mark.slow
def test_every_stage_leaves_its_artifact_and_no_checkpoint_or_temporary(tiny_run):
    exp = tiny_run / "results" / "tiny" / "cam"
    for relative in ["classifier/model.pt", "classifier/history.json", "cams/cams.h5", "cams/shard-0-of-2.h5",
                     "cams/shard-1-of-2.h5", "pseudo_labels/index.txt", "pseudo_labels/shard-0-of-2/labels.sha256",
                     "segmentation/model.pt", "segmentation/predictions_val", "metrics/cam_train.json",
                     "metrics/pseudo_label_train.json", "metrics/segmentation_val.json",
                     "figures/cam_overlays.png", "figures/classifier_curve.png", "figures/pseudo_labels.png",
                     "figures/segmentation_val.png", "figures/segmentation_test.png", "tuning/cams_val.h5",
                     "tuning/background.json", "figures/tuning_val.png", "logs/train_classifier.log"]:
        assert (exp / relative).exists(), relative
    assert len(list((exp / "segmentation/predictions_val").glob("*.png"))) == 20
    assert (tiny_run / "resources/tiny/diagnostics.json").exists()
    manifest = json.loads((tiny_run / "results/tiny/dataset/manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "val", "test"} and len(manifest["splits"]["train"]["names"]) == 60
    assert len(list((exp / "segmentation/predictions_test").glob("*.png"))) == 10  # the labelled test split, scored
    assert (exp / "metrics/segmentation_test.json").exists() and not (exp / "test_predictions.tar.gz").exists()
    rca = tiny_run / "results" / "tiny" / "rca_oaa"
    assert (rca / "classifier/accumulated_cams.h5").exists() and (rca / "metrics/pseudo_label_train.json").exists()
    oracle = tiny_run / "results" / "tiny" / "oracle"
    assert (oracle / "metrics/segmentation_val.json").exists()
    assert not (oracle / "classifier").exists()  # the oracle trains no classifier
    # a finished job removes its checkpoints; an atomic write leaves no temporary behind
    assert not list((tiny_run / "results").rglob("last.pt*"))
    assert not list(tiny_run.glob("results/**/.*.tmp-*")) and not list(tiny_run.glob("resources/**/.*.tmp-*"))


@pytest.mark.slow
def test_every_classifier_starts_from_the_pretrained_backbone(tiny_run):
    backbone = torch.load(tiny_run / "results/tiny/pretrain/backbone.pt", weights_only=True)
    assert (tiny_run / "resources/tiny_pretrain/ImageSets/Segmentation/train.txt").read_text().count("\n") == 30
    for experiment in ("cam", "rca_oaa"):
        model = torch.load(tiny_run / f"results/tiny/{experiment}/classifier/model.pt", weights_only=True)
        assert model["settings"]["backbone"]["weights"] == "results/tiny/pretrain/backbone.pt"
        assert model["fingerprint"]["starting_weights"] is not None  # the backbone's content hash
        assert model["model"]["backbone.features.0.weight"].shape == backbone["features.0.weight"].shape
    assert "| pretrain | pretrain_backbone |" in (tiny_run / "results/benchmark.md").read_text()  # its wall time


@pytest.mark.slow
def test_benchmark_table_and_seed_beats_all_background(tiny_run):
    with open(tiny_run / "results" / "benchmark.csv") as handle:
        rows = list(csv.DictReader(handle))
    stages = {(row["experiment"], row["stage"], row["split"]) for row in rows}
    assert stages == {(experiment, stage, split) for experiment in ("cam", "rca_oaa")
                      for stage, split in (("cam", "train"), ("pseudo_label", "train"), ("segmentation", "val"),
                                           ("segmentation", "test"))
                      } | {("oracle", "segmentation", "val"), ("oracle", "segmentation", "test")}
    assert {row["split"]: row["role"] for row in rows} == {"train": "train", "val": "val (tuning)",
                                                            "test": "test (held out)"}
    assert all(row["dataset"] == "tiny" for row in rows)
    cam_metrics = json.loads((tiny_run / "results/tiny/cam/metrics/cam_train.json").read_text())
    # all background: IoU of background only (foreground classes score 0)
    truth_per_class = [sum(row) for row in cam_metrics["confusion_matrix"]]
    present = sum(1 for count in truth_per_class if count > 0)
    all_background_miou = truth_per_class[0] / sum(truth_per_class) / present
    seed_miou = float(next(row["miou"] for row in rows if row["stage"] == "cam"))
    assert seed_miou > all_background_miou + 0.05


@pytest.mark.slow
def test_every_choice_is_made_on_val_images_only_and_the_table_says_so(tiny_run):
    manifest = json.loads((tiny_run / "results/tiny/dataset/manifest.json").read_text())
    names = {split: set(record["names"]) for split, record in manifest["splits"].items()}
    with open(tiny_run / "results" / "benchmark.csv") as handle:
        rows = {(row["experiment"], row["stage"], row["split"]): row for row in csv.DictReader(handle)}
    for experiment in ("cam", "rca_oaa"):
        results = tiny_run / "results/tiny" / experiment
        tuning = json.loads((results / "tuning/background.json").read_text())
        assert set(tuning["images"]) == names["val"] and not set(tuning["images"]) & (names["test"] | names["train"])
        seeds = json.loads((results / "metrics/cam_train.json").read_text())
        labels = json.loads((results / "metrics/pseudo_label_train.json").read_text())
        assert (seeds["threshold"], seeds["threshold_chosen_on"]) == (tuning["bg_threshold"], "val")
        assert (labels["bg_power"], labels["bg_power_chosen_on"]) == (tuning["bg_power"], "val")  # tiny: bg_power val
        assert tuning["bg_power"] in (1, 4) and len(tuning["bg_power_sweep"]) == 2
        assert rows[(experiment, "cam", "train")]["detail"].startswith(f"threshold {tuning['bg_threshold']} chosen on val")
        assert rows[(experiment, "pseudo_label", "train")]["detail"].startswith(
            f"bg_power {tuning['bg_power']} chosen on val")


@pytest.mark.slow
def test_an_oaa_experiment_tunes_its_threshold_on_val_maps_accumulated_as_its_training_maps(tiny_run, tmp_path):
    """The threshold is applied to maps max-merged over epochs: it is chosen on maps of that kind, not on
    inference CAMs of val."""
    from wsss.cams.extract import extract_accumulated_cams
    from wsss.cams.store import cam_names, read_cams

    results = tiny_run / "results/tiny/rca_oaa"
    manifest = json.loads((tiny_run / "results/tiny/dataset/manifest.json").read_text())
    val_names = manifest["splits"]["val"]["names"]
    accumulated_val = results / "classifier/accumulated_cams_val.h5"
    assert sorted(cam_names(accumulated_val)) == sorted(val_names)
    extract_accumulated_cams(accumulated_val, tiny_run / "resources/tiny", "val", tmp_path / "val.h5", 0, 1)
    for name in val_names:
        expected, tags = read_cams(tmp_path / "val.h5", name)
        tuned_on, tuned_tags = read_cams(results / "tuning/cams_val.h5", name)
        assert tags == tuned_tags
        np.testing.assert_array_equal(tuned_on, expected)
    assert (results / "logs/extract_accumulated_val_cams.log").exists()
    assert not (results / "logs/extract_val_cams.log").exists()


@pytest.mark.slow
def test_every_torch_stage_ran_in_deterministic_mode_and_records_how(tiny_run):
    """... and the stages without torch never loaded it (they say so where the others log torch's switches)."""
    logs = {path: path.read_text() for path in tiny_run.glob("results/**/logs/*.log")}
    torch_logs = [path for path in logs if path.stem.split("-")[0] in TORCH_RULES]
    assert {path.stem.split("-")[0] for path in torch_logs} == set(TORCH_RULES)
    torch_free_logs = [path for path in logs if path.stem.split("-")[0] in TORCH_FREE_RULES]
    assert {path.stem.split("-")[0] for path in torch_free_logs} == set(TORCH_FREE_RULES)
    for path in torch_free_logs:
        assert 'compute switches: {"torch": "torch not used by this stage"}' in logs[path], path
    assert not [path for path, text in logs.items() if "declared without torch" in text]
    for path in torch_logs:
        match = re.search(r"compute switches: (\{.*\})", logs[path])
        assert match, f"{path} does not log its compute switches"
        switches = json.loads(match.group(1))
        assert switches["deterministic_algorithms"] and switches["cudnn_deterministic"], path
        assert not switches["cudnn_benchmark"] and not switches["tf32_matmul"] and switches["threads"] == 1, path
    for record in ("cam/classifier/history.json", "oracle/segmentation/history.json",
                   "cam/metrics/segmentation_val.json"):
        run = json.loads((tiny_run / "results/tiny" / record).read_text())["run"]
        assert run["switches"]["deterministic_algorithms"] and re.fullmatch(r"[0-9a-f]{16}", run["code_version"])


@pytest.mark.slow
def test_a_second_run_has_nothing_to_do_and_a_deleted_artifact_is_rebuilt_alone(tiny_run):
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--dry-run")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    target = "results/tiny/cam/metrics/pseudo_label_train.json"
    (tiny_run / target).unlink()
    result = snakemake(tiny_run, target, "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = result.stderr[result.stderr.index("Job stats"):].split("Reasons")[0]
    assert "evaluate_pseudo_labels" in jobs and "train_classifier" not in jobs and "make_pseudo_labels" not in jobs
    assert (tiny_run / target).exists()


@pytest.mark.slow
def test_lint_reports_no_errors(tiny_run):
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_snakefile_and_every_rule_file_are_formatted_by_snakefmt():
    """`snakefmt --check` with the project's settings (pyproject.toml: line length 120) finds nothing to change."""
    files = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    assert len(files) > 5
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", *map(str, files)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, f"run `snakefmt workflow/`:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"


def test_a_bad_config_stops_before_any_job_naming_the_key(tmp_path):
    bad = yaml.safe_load(TINY_CONFIG.read_text())
    bad["classifier"]["epochs"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(tmp_path, "--configfile", "bad.yaml", "--dry-run")
    assert result.returncode != 0 and "classifier.epochs" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_the_workflow_parses_where_torch_cannot_be_imported(tmp_path):
    """The submitting host and every cluster job's re-parse of the Snakefile need no training stack."""
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch is not installed on this host (test)')\n")
    for config in (TINY_CONFIG, REPO / "config" / "config.yaml"):
        result = snakemake(tmp_path, "--configfile", str(config), "--dry-run",
                           env={"PYTHONPATH": str(tmp_path / "no_torch")})
        assert result.returncode == 0, result.stderr[-3000:]
        assert "train_classifier" in result.stdout + result.stderr


def stand_in_weights(path, name: str) -> None:
    """torchvision's state dict of the network a weights download names (vgg16-*, resnet101-*), each tensor a
    zero-strided view of one number: the names, shapes and storages the plan checks, in kilobytes."""
    import torchvision

    with torch.device("meta"):
        network = (torchvision.models.vgg16 if name.startswith("vgg16") else torchvision.models.resnet101)()
    torch.save({key: torch.zeros((), dtype=value.dtype).expand(value.shape)
                for key, value in network.state_dict().items()}, path)


def voc_like_tree(workdir, train_images: int, val_images: int, config_file=REPO / "config/voc2012_nosal.yaml"):
    """As after `download` and `prepare_dataset` of the VOC config: the downloads (placeholders; the weights as
    the plan reads them) and the root assembled from them, with split lists only (a dry run reads no image)."""
    downloads = workdir / "resources/downloads"
    downloads.mkdir(parents=True)
    for name in yaml.safe_load(config_file.read_text())["downloads"]:
        if name.endswith(".pth"):
            stand_in_weights(downloads / name, name)
        else:
            (downloads / name).write_bytes(b"placeholder")
    root = workdir / "resources/voc2012"
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    names = {"train_aug": [f"2008_{index:06d}" for index in range(train_images)],
             "val": [f"2009_{index:06d}" for index in range(val_images)],
             "test": [f"2010_{index:06d}" for index in range(val_images)]}
    names["train"] = names["train_aug"][::7]
    for split, split_names in names.items():
        (root / f"ImageSets/Segmentation/{split}.txt").write_text("\n".join(split_names) + "\n")
    return root


def planned_jobs(output: str) -> dict[str, list[dict]]:
    """{rule: [resources of each job]} from a dry run's report."""
    jobs, rule = {}, None
    for line in output.splitlines():
        header = re.match(r"^(?:local)?rule (\w+):$", line)
        if header:
            rule = header.group(1)
            jobs.setdefault(rule, []).append({})
        elif rule and (found := re.match(r"^\s+resources: (.*)$", line)):
            jobs[rule][-1] = dict(item.split("=", 1) for item in found.group(1).split(", "))
    return jobs


def test_gpu_stages_ask_for_a_gpu_and_cpu_stages_do_not_on_the_voc_config(tmp_path):
    voc_like_tree(tmp_path, train_images=40, val_images=10)
    result = snakemake(tmp_path, "--configfile", str(REPO / "config/voc2012_nosal.yaml"), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    gpu_rules = {"train_classifier", "train_classifier_accumulating", "extract_cams", "extract_val_cams",
                 "train_segmentation", "evaluate_segmentation", "predict_test"}
    cpu_rules = {"index_dataset", "extract_accumulated_cams", "extract_accumulated_val_cams", "tune_background",
                 "evaluate_cams", "make_pseudo_labels", "evaluate_pseudo_labels"}
    assert gpu_rules | cpu_rules <= set(jobs)
    for rule, resources in jobs.items():
        for job in resources:
            if rule in gpu_rules:
                assert job["gpu"] == "1", (rule, job)
                assert int(job["mem_mb"]) >= 16000 and int(job["runtime"]) >= 60, (rule, job)
            elif rule in cpu_rules:
                assert job["gpu"] == "0", (rule, job)
            else:  # local rules (indexes, the table) run on the submitting host and ask for nothing
                assert "gpu" not in job, (rule, job)
    assert len(jobs["make_pseudo_labels"]) == 16 * 5  # 16 shards for each of the 5 experiments with pseudo labels


def with_saliency_url(name: str, folder) -> tuple[dict, str]:
    """config/NAME.yaml with its saliency maps' url set (to a local copy that a dry run never opens), written in
    `folder`: what a site does before running a saliency config."""
    config = yaml.safe_load((REPO / f"config/{name}.yaml").read_text())
    for entry, spec in config["downloads"].items():
        if spec["url"] is None:
            spec["url"] = f"file:///data/{entry}"
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return config, str(folder / f"{name}.yaml")


@pytest.mark.parametrize("name", ["voc2012_nosal", "voc2012", "coco2014"])
def test_the_real_configs_plan_from_the_downloads_to_the_last_prediction(tmp_path, name):
    """On an empty folder: every download (a local rule), the dataset's assembly and index (CPU jobs), then the
    whole pipeline; the test split's predictions where the dataset has one. The saliency configs once their
    saliency maps' url is set; the saliency-free VOC config as it is."""
    config, config_file = with_saliency_url(name, tmp_path)
    result = snakemake(tmp_path, "--configfile", config_file, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    assert len(jobs["download"]) == len(config["downloads"])
    assert all(job == {"tmpdir": "/tmp"} for job in jobs["download"])  # on the submitting host
    assert [job["gpu"] for job in jobs["prepare_dataset"] + jobs["index_dataset"]] == ["0", "0"]
    experiments = len(config["experiments"])
    assert len(jobs["train_segmentation"]) == len(jobs["evaluate_segmentation"]) == experiments
    assert len(jobs.get("predict_test", [])) == (experiments if config["dataset"]["test_split"] else 0)
    assert len(jobs["make_pseudo_labels"]) == config["pseudo_labels"]["shards"] * (experiments - 1)
    assert len(jobs["results_table"]) == 1
    assert ("saliency" in result.stdout) == (config["pseudo_labels"]["mode"] == "saliency")


def test_the_saliency_free_voc_config_is_the_saliency_one_but_for_the_pseudo_labels():
    """config/voc2012_nosal.yaml repeats config/voc2012.yaml (a config file replaces another, it does not extend
    it): everything but the dataset's name, the saliency maps and the pseudo labels' mode must stay the same."""
    saliency = yaml.safe_load((REPO / "config/voc2012.yaml").read_text())
    free = yaml.safe_load((REPO / "config/voc2012_nosal.yaml").read_text())
    assert free["pseudo_labels"] == {**saliency["pseudo_labels"], "mode": "crf", "bg_power": "val"}
    assert free["dataset"]["name"] != saliency["dataset"]["name"] and free["dataset"]["root"] == saliency["dataset"]["root"]
    saliency_entry = saliency["dataset"]["archives"].pop("saliency")
    del saliency["downloads"][saliency_entry]
    for config in (saliency, free):
        del config["pseudo_labels"], config["dataset"]["name"]
    assert free == saliency


def test_a_needed_download_without_url_stops_the_plan_naming_the_entry(tmp_path):
    result = snakemake(tmp_path, "--configfile", str(REPO / "config/voc2012.yaml"), "--dry-run")
    assert result.returncode != 0
    assert "downloads.saliency_voc2012.zip.url is null" in result.stdout + result.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_saliency_maps_are_fetched_only_where_pseudo_labels_use_them(tmp_path):
    config, _ = with_saliency_url("voc2012", tmp_path)
    config["pseudo_labels"]["mode"] = "crf"
    (tmp_path / "crf.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--configfile", "crf.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(planned_jobs(result.stdout)["download"]) == len(config["downloads"]) - 1
    assert "saliency_voc2012.zip" not in result.stdout

    config["pseudo_labels"]["mode"] = "saliency"
    del config["dataset"]["archives"]["saliency"]
    (tmp_path / "no-maps.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--configfile", "no-maps.yaml", "--dry-run")
    assert result.returncode != 0 and "set dataset.archives.saliency" in result.stdout + result.stderr


def test_an_experiment_from_random_weights_plans_no_pretraining(tmp_path):
    config = str(REPO / "config/config.yaml")
    scratch = snakemake(tmp_path, "--configfile", config, "--dry-run", "--config", "run=[cam_scratch]")
    assert scratch.returncode == 0, scratch.stderr[-3000:]
    jobs = planned_jobs(scratch.stdout)
    assert "train_classifier" in jobs and "pretrain_backbone" not in jobs and "pretrain/backbone.pt" not in scratch.stdout
    both = snakemake(tmp_path, "--configfile", config, "--dry-run", "--config", "run=[cam,cam_scratch]")
    assert both.returncode == 0, both.stderr[-3000:]
    jobs = planned_jobs(both.stdout)
    assert len(jobs["pretrain_backbone"]) == 1 and len(jobs["train_classifier"]) == 2


def test_a_missing_weights_file_stops_the_plan_before_any_job(tmp_path):
    voc_like_tree(tmp_path, train_images=4, val_images=2)
    config = yaml.safe_load((REPO / "config/voc2012_nosal.yaml").read_text())
    config["segmentation"]["backbone"]["weights"] = "weights/my-resnet101.pth"  # a site's own file, not a download
    (tmp_path / "voc.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--configfile", "voc.yaml")
    assert result.returncode != 0
    assert "Missing input files" in result.stderr and "weights/my-resnet101.pth" in result.stderr
    assert not (tmp_path / "results").exists()  # nothing ran, not even the dataset's index


def test_weights_in_downloads_are_fetched_by_the_plan_not_at_training_time(tmp_path):
    voc_like_tree(tmp_path, train_images=4, val_images=2)
    (tmp_path / "resources/downloads/vgg16-397923af.pth").unlink()
    result = snakemake(tmp_path, "--configfile", str(REPO / "config/voc2012_nosal.yaml"), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    assert len(jobs["download"]) == 1 and jobs["download"][0] == {"tmpdir": "/tmp"}  # a local rule
