"""The results table: each row's split role and the split each choice was made on; the paper's numbers beside the
measured rows on VOC and COCO, none elsewhere."""

from wsss.core.rules import split_roles
from wsss.evaluation.results_table import collect_rows, split_role_labels, write_benchmark


def rows(*mious):
    return [{"dataset": "d", "experiment": experiment, "stage": "segmentation", "split": split, "role": "", "miou": miou,
             "pixel_accuracy": 0.9, "fg_recall": "", "fg_precision": "", "num_images": 3, "detail": "scored so"}
            for experiment, split, miou in mious]


def test_voc_tables_show_the_published_numbers_with_their_source(tmp_path):
    write_benchmark(rows(("cam", "val", 0.61), ("rca", "val", 0.655)), tmp_path / "t.csv", tmp_path / "t.md",
                    source="voc2012")
    text = (tmp_path / "t.md").read_text()
    published = text.split("## Published numbers")[1]
    assert "arXiv 2203.09653" in published
    assert "| rca | segmentation | val | 0.655 | scored so | 0.722 | RCA + EPS (saliency); DeepLab-v2 from COCO weights, " \
           "scales 1/0.5/0.75 (max), CRF |" in published
    assert "| rca_oaa | segmentation | val | not run |  | 0.711 | RCA + OAA+ (saliency);" in published
    assert "0.722" not in (tmp_path / "t.csv").read_text()  # the CSV holds measurements only


def test_coco_has_its_own_numbers_and_the_builtin_data_none(tmp_path):
    write_benchmark(rows(("rca", "val", 0.3)), tmp_path / "c.csv", tmp_path / "c.md", source="coco2014")
    assert "| rca | segmentation | val | 0.3 | scored so | 0.368 | RCA + EPS (saliency) |" in (tmp_path / "c.md").read_text()
    write_benchmark(rows(("rca", "val", 0.3)), tmp_path / "b.csv", tmp_path / "b.md", source="synthetic")
    assert "Published" not in (tmp_path / "b.md").read_text()


def metrics(stage, split, **extra):
    return {"stage": stage, "split": split, "miou": 0.5, "pixel_accuracy": 0.9, "num_images": 4, **extra}


def test_rows_name_their_split_role_and_where_each_choice_was_made():
    config = {"dataset": {"train_split": "train", "score_split": None, "val_split": "val", "test_split": "test"}}
    roles = split_role_labels(split_roles(config))
    assert roles == {"train": "train", "val": "val (tuning)", "test": "test (held out)"}
    records = {"cam": {
        "a": metrics("cam", "train", threshold=0.35, threshold_chosen_on="val", oracle_threshold=0.5,
                     oracle_miou=0.61),
        "b": metrics("pseudo_label", "train", bg_power=2, bg_power_chosen_on="val", ignored_fraction=0.0),
        "c": metrics("segmentation", "val", multi_scale={"scales": [1.0, 0.5, 0.75], "flip": False, "fusion": "max"},
                     crf_post_processing=True, starting_weights="resnet101-63fe2227.pth"),
        "d": metrics("segmentation", "test", multi_scale={"scales": [1.0], "flip": True, "fusion": "mean"},
                     crf_post_processing=False, starting_weights="random weights")},
        "fixed": {"e": metrics("pseudo_label", "train", bg_power=4.0, bg_power_chosen_on="config",
                               ignored_fraction=0.125, labelled_miou=0.7)}}
    rows = collect_rows("d", records, roles)
    assert [(row["experiment"], row["stage"], row["role"]) for row in rows] == [
        ("cam", "cam", "train"), ("cam", "pseudo_label", "train"), ("cam", "segmentation", "val (tuning)"),
        ("cam", "segmentation", "test (held out)"), ("fixed", "pseudo_label", "train")]
    assert rows[0]["detail"] == "threshold 0.35 chosen on val; oracle (best on train's masks) 0.6100 at 0.5"
    assert rows[1]["detail"] == "bg_power 2 chosen on val"
    assert rows[4]["detail"] == "bg_power 4.0 fixed in config; 12.5% ignored; labelled-pixel mIoU 0.7000"
    assert rows[2]["detail"] == "scales 1/0.5/0.75 (max), CRF; from resnet101-63fe2227.pth"
    assert rows[3]["detail"] == "scales 1 + flip (mean), no CRF; from random weights"


def test_the_mechanism_figures_fill_the_seed_and_pseudo_label_rows_and_stay_empty_elsewhere(tmp_path):
    import json

    from wsss.evaluation.results_table import read_mechanism, with_mechanism

    seeds = {"threshold": 0.7312, "threshold_chosen_on": "val", "target_background_fpr": 0.15,
             "val_background_fpr": 0.1498, "body_recall": 0.41, "marking_recall": 0.83, "large_body_recall": 0.33,
             "large_marking_recall": 0.8, "background_fpr": 0.162}
    labels = {"body_recall": 0.7, "marking_recall": 0.9, "large_body_recall": None, "large_marking_recall": None,
              "background_fpr": 0.05}
    (tmp_path / "m.json").write_text(json.dumps({"stage": "mechanism", "cam": seeds, "pseudo_label": labels}))
    records = {"rca": {
        "a": metrics("cam", "train", threshold=0.35, threshold_chosen_on="val", oracle_threshold=0.5, oracle_miou=0.6),
        "z": metrics("cam_no_aggregation", "train", threshold=0.3, threshold_chosen_on="val", oracle_threshold=0.3,
                     oracle_miou=0.45, mechanism={**seeds, "body_recall": 0.2}, aggregation_epochs={"on": 9, "of": 10}),
        "b": metrics("pseudo_label", "train", bg_power=2, bg_power_chosen_on="val"),
        "c": metrics("segmentation", "val")}}
    rows = collect_rows("d", with_mechanism(records, read_mechanism({"rca": [tmp_path / "m.json"]})))
    assert [row["stage"] for row in rows] == ["cam", "cam_no_aggregation", "pseudo_label", "segmentation"]
    cam, ablated, label, segmentation = rows
    assert (cam["body_recall"], cam["marking_recall"], cam["large_body_recall"], cam["bg_fpr"]) == (0.41, 0.83, 0.33,
                                                                                                    0.162)
    assert cam["detail"].endswith("; parts at background FPR 0.15: threshold 0.7312 found on val (0.150 there)")
    assert ablated["body_recall"] == 0.2 and "aggregate zeroed at inference (on in 9 of 10 training epochs)" in \
        ablated["detail"]
    assert (label["body_recall"], label["large_body_recall"], label["bg_fpr"]) == (0.7, "", 0.05)
    assert all(segmentation[column] == "" for column in ("body_recall", "marking_recall", "large_body_recall",
                                                         "large_marking_recall", "bg_fpr"))
