"""The job counts that README.md and docs/cluster.md give for the real configs' plans, against dry runs: each
case reads its number from the text and counts the jobs Snakemake plans, so it fails when the plan or the text
changes without the other (about 15 s: three dry runs). The VOC plan is the one `python bench/voc_plan.py`
times, of config/voc2012_nosal.yaml."""

import re

import pytest

from conftest import REPO, snakemake
from test_workflow import voc_like_tree, with_saliency_url


def prose(document: str) -> str:
    """A document's text with line breaks and runs of spaces as single spaces (its sentences wrap)."""
    return " ".join((REPO / document).read_text().split())


def stated(document: str, pattern: str) -> int:
    """The number `pattern`'s group captures in the document; an error quotes the pattern when it is gone."""
    found = re.search(pattern, prose(document))
    assert found, f"{document} no longer says {pattern!r}: the test's case must follow the new wording"
    return int(found.group(1).replace(",", ""))


def planned(workdir, config_file: str) -> dict[str, int]:
    """A dry run of a config in `workdir`: {rule: jobs, "total": jobs, "per experiment": the jobs of each
    experiment that trains a classifier, when they all have the same count}."""
    result = snakemake(workdir, "--configfile", config_file, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    table = output.split("Job stats:")[1].split("\n\n")[0]
    counts = {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}
    jobs_of, rules_of, rule = {}, {}, None
    for line in output.splitlines():
        if header := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = header.group(1)
        elif rule and (wildcards := re.match(r"^\s+wildcards: .*\bexperiment=(\w+)", line)):
            jobs_of[wildcards.group(1)] = jobs_of.get(wildcards.group(1), 0) + 1
            rules_of.setdefault(wildcards.group(1), set()).add(rule)
    with_classifier = {jobs_of[name] for name, rules in rules_of.items() if rules & {"train_classifier",
                                                                                   "train_classifier_accumulating"}}
    if len(with_classifier) == 1:
        counts["per experiment"] = with_classifier.pop()
    return counts


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, dict[str, int]]:
    """The plans the documents describe: the VOC config `python bench/voc_plan.py` plans (the saliency-free one)
    from an empty folder and once its dataset is assembled; COCO's from an empty folder, its saliency maps' url
    set (as a site sets it before a run)."""
    voc = str(REPO / "config/voc2012_nosal.yaml")
    assembled = tmp_path_factory.mktemp("voc_assembled")
    voc_like_tree(assembled, train_images=40, val_images=10)  # the count of jobs does not depend on the sizes
    coco = tmp_path_factory.mktemp("coco_empty")
    _, coco_config = with_saliency_url("coco2014", coco)
    return {VOC_EMPTY: planned(tmp_path_factory.mktemp("voc_empty"), voc), VOC_ASSEMBLED: planned(assembled, voc),
            COCO_EMPTY: planned(coco, coco_config)}


VOC_EMPTY, VOC_ASSEMBLED = "voc2012_nosal, empty folder", "voc2012_nosal, assembled"
COCO_EMPTY = "coco2014, empty folder"
CLAIMS = [  # (document, what it says, the plan it describes, the count)
    ("README.md", r"(\d+) jobs for the six experiments from the downloads on", VOC_EMPTY, "total"),
    ("README.md", r"COCO's, (\d+) jobs", COCO_EMPTY, "total"),
    ("docs/cluster.md", r"from an empty folder \((\d+) jobs:", VOC_EMPTY, "total"),
    ("docs/cluster.md", r"jobs: (\d+) downloads and the dataset's assembly first", VOC_EMPTY, "download"),
    ("docs/cluster.md", r"once the dataset is assembled \((\d+) jobs\)", VOC_ASSEMBLED, "total"),
    ("docs/cluster.md", r"- (\d+) for the six experiments", VOC_ASSEMBLED, "total"),
    ("docs/cluster.md", r"- (\d+) per experiment:", VOC_ASSEMBLED, "per experiment"),
    ("docs/cluster.md", r"plans (\d+) jobs from an empty folder", COCO_EMPTY, "total"),
]


@pytest.mark.parametrize("document, says, plan, count", CLAIMS,
                         ids=[f"{document}: {says}" for document, says, _, _ in CLAIMS])
def test_a_documented_job_count_is_the_dry_runs(plans, document, says, plan, count):
    assert stated(document, says) == plans[plan][count], (document, says, plan, plans[plan])


def test_the_per_experiment_list_adds_up_to_its_count():
    """docs/cluster.md's "- N per experiment: 1 classifier, 16 CAM shards, ..." lists N jobs."""
    listed = re.search(r"- (\d+) per experiment: ([^;]+);", prose("docs/cluster.md"))
    assert listed, "docs/cluster.md no longer lists the jobs of an experiment"
    assert int(listed.group(1)) == sum(int(part.split()[0]) for part in listed.group(2).split(", "))
