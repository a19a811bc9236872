# Names and helpers shared by every rule: paths, experiment wildcards, per-experiment settings, resources.
# Only torch-free modules are imported here: Snakemake parses these files on the submitting host and again in
# every cluster job.
import json
import os
import re
from pathlib import Path

from wsss.core.artifacts import folder_check
from wsss.core.code_version import code_version
from wsss.core.config import DOWNLOADS_FOLDER, experiments_to_run, resolve_experiment
from wsss.data.manifest import index_check
from wsss.core.starting_weights import check_starting_weights
from wsss.core.rules import (
    ablates_aggregation,
    dataset_archives,
    dataset_settings,
    measures_mechanism,
    pretrain_classifier_settings,
    pretrain_dataset_settings,
    pretrain_enabled,
    index_specs,
    rule_resources,
    pseudo_label_settings,
    rule_settings,
    rule_threads,
    scored_splits,
    split_roles,
)

DATASET = config["dataset"]["name"]
DATA_ROOT = config["dataset"]["root"]
SPLITS = split_roles(config)
TRAIN_SPLIT = SPLITS["train"]  # classifier, CAMs, pseudo labels, DeepLab-v2
SCORE_SPLIT = SPLITS["score"]  # CAM seeds and pseudo labels scored against its masks
VAL_SPLIT = SPLITS["val"]  # the tuning split: background threshold and bg_power chosen here; DeepLab-v2 scored
TEST_SPLIT = SPLITS["test"]  # held out (None: no test split) ...
TEST_LABELLED = config["dataset"]["test_labelled"]  # ... scored when labelled, else predicted for a server
SEGMENTATION_SPLITS = scored_splits(config)  # DeepLab-v2 scored on these
EXPERIMENTS = list(config["experiments"])  # every experiment has rules ...
RUN = experiments_to_run(config)  # ... the default target builds these
RESULTS = f"results/{DATASET}"
EXP = f"{RESULTS}/{{experiment}}"
TUNING = f"{RESULTS}/{{experiment}}/tuning"  # the val split's CAMs and the choices made on them
LOGS = f"{RESULTS}/{{experiment}}/logs"
BENCHMARKS = f"{RESULTS}/{{experiment}}/benchmarks"
MANIFEST = f"{RESULTS}/dataset/manifest.json"  # the dataset's splits, checked and content-hashed
DOWNLOADS = DOWNLOADS_FOLDER  # the config's `downloads`, one file each
BENCHMARK_CSV = "results/benchmark.csv"
BENCHMARK_MD = "results/benchmark.md"
PROVENANCE_CSV = "results/provenance.csv"  # per row of the table: commit, settings, packages, device, date
RESOLVED_CONFIG = "results/config.yaml"  # the run's configuration, every default filled in
PRETRAIN_ENABLED = pretrain_enabled(config)  # the built-in stand-in for ImageNet weights
PRETRAIN = f"{RESULTS}/pretrain"
PRETRAIN_DATA_ROOT = f"{Path(DATA_ROOT)}_pretrain"
PRETRAIN_MANIFEST = f"{PRETRAIN}/dataset/manifest.json"
PRETRAINED_BACKBONE = f"{PRETRAIN}/backbone.pt"
ENV = "../../envs/wsss.yaml"

if config["dataset"]["source"] == "voc" and not Path(DATA_ROOT).is_dir():
    raise WorkflowError(
        f"dataset.root {DATA_ROOT} does not exist: dataset.source 'voc' reads an existing VOC-layout tree there"
    )


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    experiment=names_regex(EXPERIMENTS),
    shard=r"\d+",
    num_shards=r"\d+",


ACCUMULATING = [name for name in EXPERIMENTS if resolve_experiment(config, name)["classifier"]["accumulate_cams"]]
OAA_CAMS = [name for name in EXPERIMENTS if resolve_experiment(config, name)["cam"]["protocol"] == "accumulated"]
MECHANISM = measures_mechanism(config)  # the built-in dataset: its parts/ say where each object's body and marking are
ABLATED = [name for name in EXPERIMENTS if ablates_aggregation(config, name)]  # CAMs also with the aggregate zeroed


def settings(*sections):
    """params: the JSON settings of the rule's experiment (a change reruns the rule)."""
    return lambda wildcards: rule_settings(config, wildcards.experiment, *sections)


def code(script):
    """params: the version of the code a rule's script runs (a change to it, or to the package modules it
    imports, reruns the rule)."""
    return code_version(os.path.join(WORKFLOW_DIR, "workflow", "scripts", script))


def threads(stage):
    return rule_threads(config, stage)


def resources(stage, **overrides):
    return rule_resources(config, stage, **overrides)


def num_shards(experiment, section):
    return resolve_experiment(config, experiment)[section]["shards"]


def experiment_shards(pattern, experiment, section):
    """Every shard of an experiment: `pattern` with {experiment}, {shard} and {num_shards}."""
    count = num_shards(experiment, section)
    return [pattern.format(experiment=experiment, shard=k, num_shards=count) for k in range(count)]


def shard_paths(pattern, section):
    """Input function: every shard of the job's experiment."""
    return lambda wildcards: experiment_shards(pattern, wildcards.experiment, section)


def trains_on_ground_truth(experiment):
    return resolve_experiment(config, experiment)["segmentation"]["labels"] == "ground_truth"


def configured_weights(experiment, section):
    """`<section>.backbone.weights` of an experiment (None: random weights). A file that is there is checked now,
    while Snakemake plans: one that the training could not read or load into its backbone stops the plan before
    any job, naming the key and the file (wsss/starting_weights.py, without torch)."""
    backbone = resolve_experiment(config, experiment)[section]["backbone"]
    if backbone["weights"]:
        check_starting_weights(backbone["weights"], section, backbone)
    return backbone["weights"]


def segmentation_inputs(wildcards):
    """DeepLab-v2's inputs: the labels it trains on (pseudo labels, or the true masks for an oracle), the
    dataset and, when set, its starting weights (a missing or unusable weights file stops the run before any job)."""
    source = "ground_truth" if trains_on_ground_truth(wildcards.experiment) else "pseudo_labels"
    weights = configured_weights(wildcards.experiment, "segmentation")
    return {
        "labels": f"{RESULTS}/{wildcards.experiment}/{source}/index.txt",
        "dataset": DATA_ROOT,
        "manifest": MANIFEST,
        **({"backbone_weights": weights} if weights else {}),
    }


def starts_from_pretraining(experiment):
    return PRETRAIN_ENABLED and resolve_experiment(config, experiment)["classifier"]["from_pretraining"]


USES_PRETRAINING = any(starts_from_pretraining(name) for name in RUN if not trains_on_ground_truth(name))


def classifier_inputs(wildcards):
    """The classifier's inputs: the dataset and its starting weights (the pretrained backbone, or
    classifier.backbone.weights when set, checked as the plan is made, or none: random weights)."""
    weights = (
        PRETRAINED_BACKBONE
        if starts_from_pretraining(wildcards.experiment)
        else configured_weights(wildcards.experiment, "classifier")
    )
    return {"dataset": DATA_ROOT, "manifest": MANIFEST, **({"backbone_weights": weights} if weights else {})}


def experiment_metrics(experiment):
    """The metrics files of an experiment, one row of the table each (an oracle has no CAMs or pseudo labels; an
    experiment in ABLATED has a row of its CAMs with the aggregate zeroed)."""
    seeds_and_labels = [
        f"{RESULTS}/{experiment}/metrics/cam_{SCORE_SPLIT}.json",
        *([f"{RESULTS}/{experiment}/metrics/cam_no_aggregation_{SCORE_SPLIT}.json"] if experiment in ABLATED else []),
        f"{RESULTS}/{experiment}/metrics/pseudo_label_{SCORE_SPLIT}.json",
    ]
    return [
        *([] if trains_on_ground_truth(experiment) else seeds_and_labels),
        *[f"{RESULTS}/{experiment}/metrics/segmentation_{split}.json" for split in SEGMENTATION_SPLITS],
    ]


def mechanism_metrics(experiment):
    """The mechanism figures of an experiment's seeds and pseudo labels (columns of their rows in the table):
    where the dataset has parts and the experiment has CAMs."""
    if not MECHANISM or trains_on_ground_truth(experiment):
        return []
    return [f"{RESULTS}/{experiment}/metrics/mechanism_{SCORE_SPLIT}.json"]


def experiment_figures(experiment):
    """The figures of an experiment: the default target reaches them too, so a rerun redoes any job whose
    outputs are missing."""
    figures = ["segmentation_curve.png", *[f"segmentation_{split}.png" for split in SEGMENTATION_SPLITS]]
    if not trains_on_ground_truth(experiment):
        figures += [
            "classifier_curve.png",
            "cam_threshold_sweep.png",
            "cam_overlays.png",
            "pseudo_labels.png",
            f"tuning_{VAL_SPLIT}.png",
        ]
    if TEST_SPLIT and not TEST_LABELLED:
        figures.append(f"predictions_{TEST_SPLIT}.png")
    return [f"{RESULTS}/{experiment}/figures/{name}" for name in figures]


def sharded_artifacts(experiment):
    """The CAM and pseudo-label shards of an experiment and the indexes gathered from them (an oracle has none).
    The default target reaches them too: a reader that finds a shard damaged removes it and the index, and the
    next plain run then makes both again, and everything after them, though the later outputs are all there."""
    if trains_on_ground_truth(experiment):
        return []
    return [
        *experiment_shards(f"{RESULTS}/{{experiment}}/cams/shard-{{shard}}-of-{{num_shards}}.h5", experiment, "cam"),
        f"{RESULTS}/{experiment}/cams/cams.h5",
        *experiment_shards(
            f"{RESULTS}/{{experiment}}/pseudo_labels/shard-{{shard}}-of-{{num_shards}}", experiment, "pseudo_labels"
        ),
        f"{RESULTS}/{experiment}/pseudo_labels/index.txt",
    ]


def test_archives(experiment):
    """The evaluation server's archive of an experiment's test predictions (none without a test split)."""
    return [f"{RESULTS}/{experiment}/test_predictions.tar.gz"] if TEST_SPLIT and not TEST_LABELLED else []


def tunes_bg_power(experiment):
    return resolve_experiment(config, experiment)["pseudo_labels"]["bg_power"] == "val"


def bg_power_tuning(wildcards):
    """With bg_power 'val': {"tuning": the choices made on val}; else nothing."""
    return (
        {"tuning": f"{RESULTS}/{wildcards.experiment}/tuning/background.json"}
        if tunes_bg_power(wildcards.experiment)
        else {}
    )


def pseudo_label_inputs(wildcards):
    """The pseudo labels' inputs: the CAMs, the dataset and, with bg_power 'val', the choice made on val."""
    return {
        "cams": f"{RESULTS}/{wildcards.experiment}/cams/cams.h5",
        "dataset": DATA_ROOT,
        "manifest": MANIFEST,
        **bg_power_tuning(wildcards),
    }


def training_histories():
    """{"EXPERIMENT:STAGE": history} of each training behind a row (an oracle trains no classifier)."""
    histories = {}
    for experiment in RUN:
        stages = ["segmentation"] if trains_on_ground_truth(experiment) else ["classifier", "segmentation"]
        for stage in stages:
            histories[f"{experiment}:{stage}"] = f"{RESULTS}/{experiment}/{stage}/history.json"
    return histories
