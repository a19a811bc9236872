# Names and helpers shared by every rule: paths, experiment wildcards, per-experiment settings.
import json
import re
from pathlib import Path

from wsss.cli import workflow_settings
from wsss.config import experiments_to_run, resolve_experiment
from wsss.pretrain import pretrain_classifier_settings, pretrain_dataset_settings, pretrain_enabled

DATASET = config["dataset"]["name"]
DATA_ROOT = config["dataset"]["root"]
TRAIN_SPLIT = config["dataset"]["train_split"]
EVAL_SPLIT = config["dataset"]["eval_split"]
EXPERIMENTS = list(config["experiments"])  # every experiment has rules ...
RUN = experiments_to_run(config)  # ... the default target builds these
RESULTS = f"results/{DATASET}"
EXP = f"{RESULTS}/{{experiment}}"
LOGS = f"{RESULTS}/{{experiment}}/logs"
BENCHMARKS = f"{RESULTS}/{{experiment}}/benchmarks"
BENCHMARK_CSV = "results/benchmark.csv"
BENCHMARK_MD = "results/benchmark.md"
THREADS = config["compute"]["threads"]
PRETRAIN_ENABLED = pretrain_enabled(config)  # the built-in stand-in for ImageNet weights
PRETRAIN = f"{RESULTS}/pretrain"
PRETRAIN_DATA_ROOT = f"{Path(DATA_ROOT)}_pretrain"
PRETRAINED_BACKBONE = f"{PRETRAIN}/backbone.pt"
ENV = "../../envs/wsss.yaml"

if config["dataset"]["source"] == "voc" and not Path(DATA_ROOT).is_dir():
    raise WorkflowError(f"dataset.root {DATA_ROOT} does not exist: dataset.source 'voc' reads an existing "
                        f"VOC-layout tree there")


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    experiment=names_regex(EXPERIMENTS),
    shard=r"\d+",
    num_shards=r"\d+",


ACCUMULATING = [name for name in EXPERIMENTS if resolve_experiment(config, name)["classifier"]["accumulate_cams"]]
OAA_CAMS = [name for name in EXPERIMENTS if resolve_experiment(config, name)["cam"]["protocol"] == "accumulated"]


def settings(*sections):
    """params: the JSON settings of the rule's experiment (a change reruns the rule)."""
    return lambda wildcards: workflow_settings(config, wildcards.experiment, *sections)


def num_shards(experiment, section):
    return resolve_experiment(config, experiment)[section]["shards"]


def shard_paths(pattern, section):
    """Input function: every shard of an experiment, `pattern` with {shard} and {num_shards}."""

    def paths(wildcards):
        count = num_shards(wildcards.experiment, section)
        return [pattern.format(experiment=wildcards.experiment, shard=k, num_shards=count) for k in range(count)]

    return paths


def trains_on_ground_truth(experiment):
    return resolve_experiment(config, experiment)["segmentation"]["labels"] == "ground_truth"


def segmentation_labels(wildcards):
    """The label index DeepLab-v2 trains on: pseudo labels, or the true masks for an oracle."""
    source = "ground_truth" if trains_on_ground_truth(wildcards.experiment) else "pseudo_labels"
    return f"{RESULTS}/{wildcards.experiment}/{source}/index.txt"


def experiment_metrics(experiment):
    """The metrics files of an experiment (an oracle has no CAMs or pseudo labels)."""
    seeds_and_labels = [
        f"{RESULTS}/{experiment}/metrics/cam_{TRAIN_SPLIT}.json",
        f"{RESULTS}/{experiment}/metrics/pseudo_label_{TRAIN_SPLIT}.json",
    ]
    return [
        *([] if trains_on_ground_truth(experiment) else seeds_and_labels),
        f"{RESULTS}/{experiment}/metrics/segmentation_{EVAL_SPLIT}.json",
    ]


def classifier_inputs(wildcards):
    """The classifier's inputs: the dataset, and the pretrained backbone when pretraining is on."""
    return {"dataset": DATA_ROOT, **({"backbone_weights": PRETRAINED_BACKBONE} if PRETRAIN_ENABLED else {})}
