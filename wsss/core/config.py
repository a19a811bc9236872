"""Configuration: load, validate against config/schema.yaml (filling defaults), resolve experiments.

`python -m wsss.core.config FILE...` checks config files as the workflow will (a missing file, a YAML
syntax error with its line and column, a key against the schema), before Snakemake reads them.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
STAGE_SECTIONS = ("classifier", "cam", "crf", "pseudo_labels", "segmentation")
# compute settings that change a stage's numbers (loader_workers does not: augmentation is seeded per sample)
RESULT_COMPUTE_KEYS = ("device", "threads", "deterministic", "precision", "channels_last")


class ConfigError(ValueError):
    """A configuration that does not follow the schema; the message names the key."""


@functools.cache
def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _with_defaults(validator_class):
    """A validator that fills `default` values of missing properties in place while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate `config` in place (defaults filled in) and return it; raise ConfigError naming the key."""
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_key_path(error)}: {error.message}" for error in errors]
        raise ConfigError(f"{source} does not follow {SCHEMA_PATH.name}:\n" + "\n".join(lines))
    _complete_resources(config)
    _check_ranges(config, source)
    _check_split_roles(config, source)
    _check_pseudo_labels(config, source)
    _check_archives(config, source)
    if config["pretrain"]["images"] > 0:
        if config["dataset"]["source"] != "synthetic":
            raise ConfigError(f"{source}: pretrain.images > 0 needs dataset.source synthetic (real data starts "
                              f"from ImageNet weights: classifier.backbone.weights)")
        if config["classifier"]["backbone"]["weights"]:
            raise ConfigError(f"{source}: pretrain.images > 0 and classifier.backbone.weights both give the "
                              f"backbone's start; set one")
    return config


def _complete_resources(config: dict) -> None:
    """A stage's resources given in part take the rest from the stage's default."""
    stages = load_schema()["properties"]["resources"]["properties"]
    for stage, value in config["resources"].items():
        if isinstance(value, dict):
            config["resources"][stage] = {**stages[stage]["default"], **value}


# The archives a downloaded dataset is assembled from, by role: (needed, optional).
ARCHIVE_ROLES = {"voc2012": (("trainval", "sbd"), ("test", "saliency")),
                 "coco2014": (("train_images", "val_images", "annotations"), ("saliency",))}


def _check_archives(config: dict, source: str) -> None:
    """A downloaded dataset names an entry of `downloads` for each archive it needs, and only known roles."""
    dataset = config["dataset"]
    archives = dataset["archives"]
    if dataset["source"] not in ARCHIVE_ROLES:
        if archives:
            raise ConfigError(f"{source}: dataset.archives is read only with dataset.source voc2012 or coco2014, "
                              f"not {dataset['source']}")
        return
    needed, optional = ARCHIVE_ROLES[dataset["source"]]
    for role in sorted(set(needed) - set(archives)):
        raise ConfigError(f"{source}: dataset.archives.{role} is needed with dataset.source {dataset['source']} "
                          f"(the entry of `downloads` that holds it)")
    for role, name in sorted(archives.items()):
        if role not in needed + optional:
            raise ConfigError(f"{source}: dataset.archives.{role}: unknown role for {dataset['source']} (known: "
                              f"{', '.join(sorted(needed + optional))})")
        if name not in config["downloads"]:
            raise ConfigError(f"{source}: dataset.archives.{role} names {name!r}, which is not an entry of "
                              f"`downloads`")


def _check_ranges(config: dict, source: str) -> None:
    """What the schema cannot say: a (low, high) range must not be reversed."""
    for section in ("classifier", "segmentation"):
        low, high = config[section]["scale_range"]
        if low > high:
            raise ConfigError(f"{source}: {section}.scale_range [{low}, {high}] is reversed: give [low, high]")


def _check_split_roles(config: dict, source: str) -> None:
    """The tuning split is not a training split, and the held-out test split is neither (docs/evaluation.md)."""
    dataset = config["dataset"]
    if dataset["val_split"] in (dataset["train_split"], dataset["score_split"]):
        raise ConfigError(f"{source}: dataset.val_split {dataset['val_split']!r} is also the train or score split: "
                          f"the tuning split must be held out from training")
    if dataset["test_split"] is not None and dataset["test_split"] in (dataset["train_split"], dataset["score_split"],
                                                                      dataset["val_split"]):
        raise ConfigError(f"{source}: dataset.test_split {dataset['test_split']!r} is also the train, score or val "
                          f"split: the test split is held out from training and tuning")
    if dataset["test_labelled"] and dataset["test_split"] is None:
        raise ConfigError(f"{source}: dataset.test_labelled is true but dataset.test_split is null")


def _check_pseudo_labels(config: dict, source: str) -> None:
    """A background power chosen on val needs pseudo labels that can be made for the val images."""
    labels = config["pseudo_labels"]
    if labels["mode"] == "saliency" and labels["bg_power"] == "val":
        raise ConfigError(f"{source}: pseudo_labels.bg_power 'val' is chosen on the val split's pseudo labels, made "
                          f"as in mode 'crf'; saliency maps cover the training images only: give a number with "
                          f"mode 'saliency'")


def section_defaults(section: str) -> dict:
    """The schema's defaults of one top-level section."""
    return validate_config({"dataset": {"name": "defaults", "root": "."}})[section]


def read_config_file(path: str | Path) -> dict:
    """A config file's YAML as a dict; a missing file or a syntax error is a ConfigError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config file holds keys at the top level, not a {type(config).__name__}")
    return config


def load_config(path: str | Path) -> dict:
    return validate_config(read_config_file(path), source=str(path))


def experiments_to_run(config: dict) -> list[str]:
    """The experiments the default target builds (config key `run`), in the order of `experiments`."""
    if config["run"] == "all":
        return list(config["experiments"])
    unknown = [name for name in config["run"] if name not in config["experiments"]]
    if unknown:
        raise ConfigError(f"run names {', '.join(unknown)}, not in config key 'experiments' "
                          f"(known: {', '.join(config['experiments'])})")
    return [name for name in config["experiments"] if name in config["run"]]


def deep_merge(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_experiment(config: dict, experiment: str) -> dict:
    """The configuration one experiment runs with: its overrides merged over the shared sections."""
    experiments = config.get("experiments", {})
    if experiment not in experiments:
        raise ConfigError(f"experiment {experiment!r} is not in config key 'experiments' "
                          f"(known: {', '.join(sorted(experiments))})")
    resolved = deep_merge(config, experiments[experiment] or {})
    resolved["experiments"] = {experiment: {}}
    validate_config(resolved, source=f"experiment {experiment!r}")
    if resolved["cam"]["protocol"] == "accumulated" and not resolved["classifier"]["accumulate_cams"]:
        raise ConfigError(f"experiment {experiment!r}: cam.protocol 'accumulated' needs classifier.accumulate_cams: true")
    return resolved


def result_compute(compute: dict) -> dict:
    """The compute settings that change a stage's numbers (part of its settings: a change reruns it)."""
    return {key: compute[key] for key in RESULT_COMPUTE_KEYS}


def stage_settings(config: dict, experiment: str, section: str) -> dict:
    """One section of a resolved experiment plus what every stage needs (seed, compute, experiment)."""
    resolved = resolve_experiment(config, experiment)
    return {"seed": resolved["seed"], "experiment": experiment, "compute": resolved["compute"],
            section: resolved[section]}


def derive_seed(seed: int, *names: Any) -> int:
    """A seed for one consumer (stage, experiment, epoch ...) derived from the one config seed."""
    text = json.dumps([seed, *[str(name) for name in names]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


DOWNLOADS_FOLDER = "resources/downloads"  # rule `download` writes each entry of `downloads` here, by its name


def uses_saliency(config: dict) -> bool:
    """Whether an experiment makes its pseudo labels with saliency maps (an oracle makes none)."""
    return any(resolved["pseudo_labels"]["mode"] == "saliency" and resolved["segmentation"]["labels"] != "ground_truth"
               for resolved in (resolve_experiment(config, name) for name in config["experiments"]))


def needed_downloads(config: dict) -> dict[str, str]:
    """{entry of `downloads`: the key that needs it}: the archives the dataset is assembled from (the saliency
    maps only where an experiment uses them) and the weights files read from the downloads folder."""
    needed = {}
    if config["dataset"]["source"] in ARCHIVE_ROLES:
        saliency_used = uses_saliency(config)
        for role, name in sorted(config["dataset"]["archives"].items()):
            if role != "saliency" or saliency_used:
                needed.setdefault(name, f"dataset.archives.{role}")
    for experiment in config["experiments"]:
        resolved = resolve_experiment(config, experiment)
        for section in ("classifier", "segmentation"):
            weights = resolved[section]["backbone"]["weights"]
            if weights and Path(weights).parent == Path(DOWNLOADS_FOLDER) and Path(weights).name in config["downloads"]:
                needed.setdefault(Path(weights).name, f"{section}.backbone.weights")
    return needed


def check_download_urls(config: dict, source: str) -> None:
    """Every download the run needs has a url: a null one (an entry the site must point at its own copy) stops
    the check and the planning, naming the entry and what to set, instead of the download job."""
    for name, needed_by in needed_downloads(config).items():
        if config["downloads"][name]["url"] is None:
            hint = (" (or make the pseudo labels without saliency maps: pseudo_labels.mode crf with bg_power val, "
                    "as config/voc2012_nosal.yaml does for VOC)" if needed_by == "dataset.archives.saliency" else "")
            raise ConfigError(f"{source}: downloads.{name}.url is null, and {needed_by} needs that file: set "
                              f"downloads.{name}.url and .sha256 to your copy's{hint}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m wsss.core.config", description="Check config files against the "
                                     "schema, as the workflow will.")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        try:
            config = load_config(path)
            for experiment in experiments_to_run(config):
                resolve_experiment(config, experiment)
            check_download_urls(config, path)
            print(f"{path}: valid ({len(config['experiments'])} experiments)")
        except ConfigError as error:
            print(error)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
