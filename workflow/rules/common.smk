# Names and helpers shared by every rule: paths, experiment wildcards, per-experiment settings, resources. A rule
# takes another rule's output from that rule (rules.<rule>.output.<name>, after it in the include order), never by
# spelling its path again: no helper here re-derives a rule's outputs (tests/test_rule_graph.py).
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


def filled(pattern, **wildcards):
    """A rule's output pattern (rules.<rule>.output.<name>) with these wildcards filled, any other left for the job's
    own: the one path expand makes of it."""
    (path,) = expand(pattern, allow_missing=True, **wildcards)
    return path


def experiment_shards(pattern, experiment, section):
    """Every shard of an experiment: `pattern` (a sharded rule's output) with {experiment}, {shard} and
    {num_shards} filled."""
    count = num_shards(experiment, section)
    return expand(pattern, experiment=experiment, shard=range(count), num_shards=count)


def shard_paths(pattern, section):
    """Input function: every shard of the job's experiment."""
    return lambda wildcards: experiment_shards(pattern, wildcards.experiment, section)


def trains_on_ground_truth(experiment):
    return resolve_experiment(config, experiment)["segmentation"]["labels"] == "ground_truth"


def starting_weights(experiment, section):
    """{"backbone_weights": `<section>.backbone.weights`} of an experiment, or {} (random weights): a training's
    input, the config's path (a `downloads` entry's file for the VOC and COCO configs). A file that is there is
    checked now, while Snakemake plans: one that the training could not read or load into its backbone stops the
    plan before any job, naming the key and the file (wsss/core/starting_weights.py, without torch)."""
    backbone = resolve_experiment(config, experiment)[section]["backbone"]
    if not backbone["weights"]:
        return {}
    check_starting_weights(backbone["weights"], section, backbone)
    return {"backbone_weights": backbone["weights"]}


def starts_from_pretraining(experiment):
    return PRETRAIN_ENABLED and resolve_experiment(config, experiment)["classifier"]["from_pretraining"]


USES_PRETRAINING = any(starts_from_pretraining(name) for name in RUN if not trains_on_ground_truth(name))


def tunes_bg_power(experiment):
    return resolve_experiment(config, experiment)["pseudo_labels"]["bg_power"] == "val"
