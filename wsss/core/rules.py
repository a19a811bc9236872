"""What the Snakemake rules need from the package, without torch: settings, resources, code versions.

Snakemake parses the Snakefile on the submitting host and again inside every cluster job, often
where the training stack is slow to import or absent, so nothing here (nor in what it imports)
imports torch. `tests/test_workflow.py` parses the Snakefile with torch made unimportable.

- `rule_settings`: the JSON a rule passes to its script as params. Everything that shapes the
  rule's result is in it (the experiment's section, the seed, and the compute settings that change
  numbers: device, threads, deterministic), so a change to any of it reruns the rule; what does
  not change results (the loader workers, the resources a job asks for) is left out.
- `rule_resources` / `rule_threads`: what a job of a stage asks its scheduler for (config key
  `resources`): cores, GPUs, memory, wall time, and where the site sets them, GPU model and partition.
- `split_roles` / `index_specs`: which split plays which part, and how the dataset's index checks it.
- `pretrain_*`: the settings of the built-in dataset's pretraining stage.
- `measures_mechanism` / `ablates_aggregation`: where the mechanism measurements are planned.
"""

from __future__ import annotations

import copy
import json

from .config import (
    ARCHIVE_ROLES,
    ConfigError,
    deep_merge,
    derive_seed,
    experiments_to_run,
    resolve_experiment,
    result_compute,
    uses_saliency,
)

PRETRAIN_EXPERIMENT = "pretrain"
GPU_STAGES = ("pretrain", "classifier", "cams", "segmentation", "predict")


def rule_settings(config: dict, experiment: str, *sections: str, leave_out: tuple[str, ...] = ()) -> str:
    """JSON settings of one experiment's stage, for a rule's params (a change reruns the rule).

    `leave_out`: keys ("section.key") the rule does not read, so that changing them does not rerun it (the
    script gets the schema's default in their place)."""
    resolved = resolve_experiment(config, experiment)
    settings = {"seed": resolved["seed"], "experiment": experiment, "compute": result_compute(resolved["compute"])}
    settings.update({section: resolved[section] for section in sections})
    for dotted in leave_out:
        section, key = dotted.split(".")
        settings[section] = {name: value for name, value in settings[section].items() if name != key}
    return json.dumps(settings, sort_keys=True)


def dataset_settings(config: dict) -> str:
    """prepare_dataset's settings: the dataset section, the seed and the compute settings, which no experiment
    overrides; no experiment's name, so that renaming or reordering experiments does not make the data again."""
    return json.dumps({"seed": config["seed"], "compute": result_compute(config["compute"]),
                       "dataset": config["dataset"]}, sort_keys=True)


def pseudo_label_settings(config: dict, experiment: str) -> str:
    """make_pseudo_labels' settings. The bg_power candidates act only through tune_background's choice, which
    is an input of the rule: with a fixed power, changing them must not redo the CRF of every image."""
    return rule_settings(config, experiment, "pseudo_labels", "crf", leave_out=("pseudo_labels.bg_powers",))


def rule_threads(config: dict, stage: str) -> int:
    """Cores a job of `stage` asks for (Snakemake caps it at --cores; results do not depend on it)."""
    return config["resources"][stage]["cpus"]


def rule_resources(config: dict, stage: str, gpus: int | None = None) -> dict:
    """Snakemake resources of a job of `stage`: memory, wall time, GPUs and the site's GPU model and partition.

    `gpus` overrides the stage's count (a rule of a GPU stage that needs no GPU passes 0).
    """
    spec = config["resources"][stage]
    gpus = spec["gpus"] if gpus is None else gpus
    resources = {"mem_mb": spec["mem_mb"], "runtime": spec["runtime"], "gpu": gpus}
    site = config["resources"]
    if gpus and site["gpu_model"]:
        resources["gpu_model"] = site["gpu_model"]
    partition = site["gpu_partition"] if gpus else site["cpu_partition"]
    if partition:
        resources["slurm_partition"] = partition
    return resources


def split_roles(config: dict) -> dict[str, str | None]:
    """The split of each role: `train` (classifier, CAMs, pseudo labels, DeepLab-v2), `score` (CAM seeds and
    pseudo labels scored), `val` (every tuning choice made on it; DeepLab-v2 scored, marked as tuning), `test`
    (held out: scored when labelled, else predicted only; None when there is none)."""
    dataset = config["dataset"]
    return {"train": dataset["train_split"], "score": dataset["score_split"] or dataset["train_split"],
            "val": dataset["val_split"], "test": dataset["test_split"]}


def scored_splits(config: dict) -> list[str]:
    """The splits DeepLab-v2 is scored on: val, and the test split when it is labelled."""
    dataset = config["dataset"]
    return [dataset["val_split"]] + ([dataset["test_split"]] if dataset["test_labelled"] else [])


def index_specs(config: dict) -> dict[str, dict]:
    """How `index_dataset` checks each split the run uses (see data.manifest.split_spec): where its masks are,
    whether it needs tags and masks, which split must contain it, which splits it must not share images with."""
    roles = split_roles(config)
    oracle = any(resolve_experiment(config, name)["segmentation"]["labels"] == "ground_truth"
                 for name in experiments_to_run(config))
    held_out = {"val": [roles["train"]], "test": [roles["train"], roles["val"]]}
    specs: dict[str, dict] = {}
    for role, split in roles.items():
        if split is None:
            continue
        spec = specs.setdefault(split, {"tags": False, "require_masks": False})
        spec["tags"] |= role == "train"
        spec["require_masks"] |= (role in ("score", "val") or (role == "train" and oracle)
                                  or (role == "test" and config["dataset"]["test_labelled"]))
        if role == "score" and split != roles["train"]:
            spec["subset_of"] = roles["train"]
        if role in held_out:
            spec["disjoint_from"] = held_out[role]
        if split in config["dataset"]["masks"]:
            spec["masks"] = config["dataset"]["masks"][split]
    return specs


def dataset_archives(config: dict) -> dict[str, str]:
    """The `downloads` entries the dataset's assembly takes, by role: the saliency maps only where an experiment
    uses them (so a run without them never asks for a file whose url the site has not set)."""
    dataset = config["dataset"]
    archives = dict(dataset["archives"])
    if uses_saliency(config):
        if dataset["source"] in ARCHIVE_ROLES and "saliency" not in archives:
            raise ConfigError("pseudo_labels.mode 'saliency' needs saliency maps: set dataset.archives.saliency to "
                              "the `downloads` entry of your copy, or use pseudo_labels.mode 'crf'")
    else:
        archives.pop("saliency", None)
    return archives


def pretrain_enabled(config: dict) -> bool:
    return config["pretrain"]["images"] > 0


def pretrain_dataset_settings(config: dict) -> dict:
    """Settings of the pretraining set's generation: one train split, the dataset's options with
    `pretrain.options` over them (other classes, hidden markings), its own seed."""
    dataset = copy.deepcopy(config["dataset"])
    dataset["synthetic"]["splits"] = {"train": config["pretrain"]["images"]}
    dataset["synthetic"]["options"] = {**dataset["synthetic"]["options"], **config["pretrain"]["options"]}
    return {"seed": derive_seed(config["seed"], PRETRAIN_EXPERIMENT, "dataset"), "experiment": PRETRAIN_EXPERIMENT,
            "compute": result_compute(config["compute"]), "dataset": dataset}


def pretrain_classifier_settings(config: dict) -> dict:
    """Settings of the pretraining run: the shared classifier section, plain (no RCA, no OAA), from random
    weights, every layer at the pretraining LR."""
    pretrain = config["pretrain"]
    overrides = {"epochs": pretrain["epochs"], "batch_size": pretrain["batch_size"], "lr": pretrain["lr"],
                 "lr_milestones": pretrain["lr_milestones"], "new_layer_lr_mult": 1.0, "warmup_epochs": 0,
                 "accumulate_cams": False, "backbone": {"weights": None},
                 "rca": {"contrast": False, "aggregation": False}}
    return {"seed": derive_seed(config["seed"], PRETRAIN_EXPERIMENT, "classifier"), "experiment": PRETRAIN_EXPERIMENT,
            "compute": result_compute(config["compute"]), "classifier": deep_merge(config["classifier"], overrides)}


def measures_mechanism(config: dict) -> bool:
    """Whether the mechanism measurements are planned: only the built-in dataset has the objects' parts."""
    return config["dataset"]["source"] == "synthetic"


def ablates_aggregation(config: dict, experiment: str) -> bool:
    """Whether an experiment's CAMs are also extracted with the aggregate zeroed: inference CAMs of a classifier
    with the semantic aggregation (the maps OAA accumulated in training cannot be remade without it)."""
    resolved = resolve_experiment(config, experiment)
    return (measures_mechanism(config) and resolved["classifier"]["rca"]["aggregation"]
            and resolved["cam"]["protocol"] == "inference" and resolved["segmentation"]["labels"] != "ground_truth")
