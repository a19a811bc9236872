import pytest
import yaml

from wsss.core.config import ConfigError, derive_seed, load_config, resolve_experiment, stage_settings, validate_config

from conftest import REPO


def minimal():
    return {"dataset": {"name": "d", "root": "r"}}


def test_defaults_are_filled_from_the_schema():
    config = validate_config(minimal())
    assert config["seed"] == 0
    assert config["classifier"]["epochs"] == 30
    assert config["classifier"]["backbone"]["name"] == "vgg16"
    assert config["segmentation"]["aspp_rates"] == [6, 12, 18, 24]
    assert config["experiments"] == {"cam": {}}


def test_a_wrong_value_is_reported_with_its_key():
    config = minimal()
    config["classifier"] = {"epochs": 0}
    with pytest.raises(ConfigError, match=r"classifier\.epochs"):
        validate_config(config)


def test_an_unknown_key_is_reported():
    config = minimal()
    config["cam"] = {"scale": [1.0]}
    with pytest.raises(ConfigError, match="scale"):
        validate_config(config)


def test_experiment_overrides_are_merged_and_validated():
    config = minimal()
    config["experiments"] = {"cam": {}, "long": {"classifier": {"epochs": 50}}, "bad": {"cam": {"flip": "yes"}}}
    config = validate_config(config)
    assert resolve_experiment(config, "long")["classifier"]["epochs"] == 50
    assert resolve_experiment(config, "long")["classifier"]["batch_size"] == 8
    assert resolve_experiment(config, "cam")["classifier"]["epochs"] == 30
    with pytest.raises(ConfigError, match="bad"):
        resolve_experiment(config, "bad")
    with pytest.raises(ConfigError, match="nope"):
        resolve_experiment(config, "nope")


@pytest.mark.parametrize("dataset, key", [
    ({"val_split": "train"}, "dataset.val_split 'train'"),
    ({"score_split": "val"}, "dataset.val_split 'val'"),
    ({"test_split": "val"}, "dataset.test_split 'val'"),
    ({"test_split": "train"}, "dataset.test_split 'train'"),
    ({"test_labelled": True}, "dataset.test_labelled"),
    ({"eval_split": "val"}, "eval_split"),  # the old name of val_split
])
def test_the_tuning_and_test_splits_must_be_held_out(dataset, key):
    config = minimal()
    config["dataset"].update(dataset)
    with pytest.raises(ConfigError, match=key):
        validate_config(config)


def test_bg_power_val_is_refused_with_saliency_maps_which_cover_the_training_images_only():
    config = minimal()
    config["experiments"] = {"cam": {}, "eps": {"pseudo_labels": {"mode": "saliency", "bg_power": "val"}}}
    config = validate_config(config)
    with pytest.raises(ConfigError, match=r"experiment 'eps': pseudo_labels\.bg_power 'val' .* mode 'crf'"):
        resolve_experiment(config, "eps")


def test_bg_power_is_a_number_or_val():
    for value in (2, "val"):
        config = minimal()
        config["pseudo_labels"] = {"bg_power": value}
        assert validate_config(config)["pseudo_labels"]["bg_power"] == value
    config = minimal()
    config["pseudo_labels"] = {"bg_power": "test"}
    with pytest.raises(ConfigError, match=r"pseudo_labels\.bg_power"):
        validate_config(config)


def test_stage_settings_carry_seed_compute_and_section():
    config = validate_config(minimal())
    settings = stage_settings(config, "cam", "crf")
    assert set(settings) == {"seed", "experiment", "compute", "crf"}


def test_shipped_configs_are_valid():
    for path in (REPO / "config").glob("*.yaml"):
        if path.name != "schema.yaml":
            load_config(path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml does not exist"):
        load_config(tmp_path / "nothere.yaml")


def test_bad_yaml_value_names_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "x y", "root": "r"}}))
    with pytest.raises(ConfigError, match=r"c\.yaml.*\n.*dataset\.name"):
        load_config(path)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "classifier", 1) == derive_seed(0, "classifier", 1)
    assert len({derive_seed(0, "classifier", epoch) for epoch in range(50)}) == 50
    assert derive_seed(0, "a") != derive_seed(1, "a")


def test_stage_scripts_take_json_settings_or_a_config_file(tmp_path):
    import json

    from wsss.core.cli import parse_stage_args, stage_parser
    from wsss.core.rules import rule_settings

    config_path = REPO / "config" / "config.yaml"
    parser = stage_parser("test", ("cam",), uses_torch=True)
    _, from_file = parse_stage_args(parser, argv=["--config", str(config_path)])
    text = rule_settings(load_config(config_path), "cam", "cam")
    # what changes numbers reruns a rule (threads included); the loader workers do not
    assert json.loads(text)["compute"] == {"device": "auto", "threads": 1, "deterministic": True, "precision": "fp32",
                                           "channels_last": False}
    _, from_json = parse_stage_args(stage_parser("test", ("cam",), uses_torch=True), argv=["--settings", text])
    assert from_json["cam"] == from_file["cam"] and from_json["seed"] == from_file["seed"]
    assert from_json["compute"]["loader_workers"] == 4  # schema default when --compute does not give it
    _, with_compute = parse_stage_args(stage_parser("test", ("cam",), uses_torch=True), argv=
                                       ["--settings", text, "--compute", '{"device": "cpu"}'])
    assert with_compute["compute"]["device"] == "cpu" and with_compute["compute"]["threads"] == 1


def test_run_selects_experiments_in_config_order():
    from wsss.core.config import experiments_to_run

    config = minimal()
    config["experiments"] = {"a": {}, "b": {}, "c": {}}
    assert experiments_to_run(validate_config(dict(config))) == ["a", "b", "c"]
    config["run"] = ["c", "a"]
    assert experiments_to_run(validate_config(dict(config))) == ["a", "c"]
    config["run"] = ["a", "z"]
    with pytest.raises(ConfigError, match="z"):
        experiments_to_run(validate_config(dict(config)))
    config["run"] = "some"
    with pytest.raises(ConfigError, match="run"):
        validate_config(dict(config))


def test_the_bg_power_candidates_rerun_no_pseudo_labels_made_at_a_fixed_power():
    import json

    from wsss.core.cli import parse_stage_args, stage_parser
    from wsss.core.rules import pseudo_label_settings

    def settings(**pseudo_labels):
        config = minimal()
        config["pseudo_labels"] = {"bg_power": 2.0, "bg_powers": [1.0, 2.0], **pseudo_labels}
        return pseudo_label_settings(validate_config(config), "cam")

    assert settings(bg_powers=[1.0, 2.0, 4.0]) == settings()
    assert settings(bg_power=3.0) != settings()
    assert settings(bg_power="val") != settings()
    assert "bg_powers" not in json.loads(settings())["pseudo_labels"]
    parser = stage_parser("test", ("pseudo_labels", "crf"), uses_torch=True)
    _, parsed = parse_stage_args(parser, argv=["--settings", settings()])
    assert parsed["pseudo_labels"]["bg_power"] == 2.0 and parsed["pseudo_labels"]["mode"] == "crf"


def test_make_check_refuses_a_needed_download_without_url_and_passes_the_saliency_free_voc_config(capsys, tmp_path):
    from wsss.core.config import main

    assert main([str(REPO / "config/voc2012_nosal.yaml")]) == 0
    assert "valid" in capsys.readouterr().out
    assert main([str(REPO / "config/voc2012.yaml")]) == 1
    said = capsys.readouterr().out
    assert "downloads.saliency_voc2012.zip.url is null" in said and "dataset.archives.saliency" in said
    assert "pseudo_labels.mode crf" in said  # ... and the way around it
    # a weights file read from the downloads folder is a needed download too; one nothing reads is not
    config = yaml.safe_load((REPO / "config/voc2012_nosal.yaml").read_text())
    config["downloads"]["resnet101-63fe2227.pth"]["url"] = None
    config["downloads"]["unused.zip"] = {"url": None, "sha256": "0" * 64}
    (tmp_path / "weights.yaml").write_text(yaml.safe_dump(config))
    assert main([str(tmp_path / "weights.yaml")]) == 1
    said = capsys.readouterr().out
    assert "downloads.resnet101-63fe2227.pth.url is null" in said and "segmentation.backbone.weights" in said
    config["downloads"]["resnet101-63fe2227.pth"]["url"] = "file:///data/r101.pth"
    (tmp_path / "unused.yaml").write_text(yaml.safe_dump(config))
    assert main([str(tmp_path / "unused.yaml")]) == 0
