"""Configuration: load, validate against config/schema.yaml (filling defaults), resolve experiments."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
STAGE_SECTIONS = ("classifier", "cam", "crf", "pseudo_labels", "segmentation")


class ConfigError(ValueError):
    """A configuration that does not follow the schema; the message names the key."""


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
    if config["pretrain"]["images"] > 0:
        if config["dataset"]["source"] != "synthetic":
            raise ConfigError(f"{source}: pretrain.images > 0 needs dataset.source synthetic (real data starts "
                              f"from ImageNet weights: classifier.backbone.weights)")
        if config["classifier"]["backbone"]["weights"]:
            raise ConfigError(f"{source}: pretrain.images > 0 and classifier.backbone.weights both give the "
                              f"backbone's start; set one")
    return config


def section_defaults(section: str) -> dict:
    """The schema's defaults of one top-level section."""
    return validate_config({"dataset": {"name": "defaults", "root": "."}})[section]


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    return validate_config(config, source=str(path))


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


def stage_settings(config: dict, experiment: str, section: str) -> dict:
    """One section of a resolved experiment plus what every stage needs (seed, compute, experiment)."""
    resolved = resolve_experiment(config, experiment)
    return {"seed": resolved["seed"], "experiment": experiment, "compute": resolved["compute"],
            section: resolved[section]}


def derive_seed(seed: int, *names: Any) -> int:
    """A seed for one consumer (stage, experiment, epoch ...) derived from the one config seed."""
    text = json.dumps([seed, *[str(name) for name in names]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
