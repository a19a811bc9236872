"""The results table: the paper's numbers beside the measured rows on VOC and COCO, none elsewhere."""

from wsss.results_table import write_benchmark


def rows(*mious):
    return [{"dataset": "d", "experiment": experiment, "stage": "segmentation", "split": split, "miou": miou,
             "pixel_accuracy": 0.9, "fg_recall": "", "fg_precision": "", "num_images": 3, "detail": ""}
            for experiment, split, miou in mious]


def test_voc_tables_show_the_published_numbers_with_their_source(tmp_path):
    write_benchmark(rows(("cam", "val", 0.61), ("rca", "val", 0.655)), tmp_path / "t.csv", tmp_path / "t.md",
                    source="voc2012")
    text = (tmp_path / "t.md").read_text()
    published = text.split("## Published numbers")[1]
    assert "arXiv 2203.09653" in published
    assert "| rca | segmentation | val | 0.655 | 0.722 | RCA + EPS |" in published
    assert "| rca_oaa | segmentation | val | not run | 0.711 | RCA + OAA+ |" in published
    assert "0.722" not in (tmp_path / "t.csv").read_text()  # the CSV holds measurements only


def test_coco_has_its_own_numbers_and_the_builtin_data_none(tmp_path):
    write_benchmark(rows(("rca", "val", 0.3)), tmp_path / "c.csv", tmp_path / "c.md", source="coco2014")
    assert "| rca | segmentation | val | 0.3 | 0.368 | RCA + EPS |" in (tmp_path / "c.md").read_text()
    write_benchmark(rows(("rca", "val", 0.3)), tmp_path / "b.csv", tmp_path / "b.md", source="synthetic")
    assert "Published" not in (tmp_path / "b.md").read_text()
