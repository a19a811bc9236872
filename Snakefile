# The RCA weakly supervised segmentation pipeline: image tags -> classifier -> CAMs -> CRF pseudo labels
# -> DeepLab-v2 -> benchmark table. `snakemake -c N` runs it on the built-in dataset (config/config.yaml);
# `--configfile FILE` runs another configuration instead (defaults: config/schema.yaml).
import os
import sys

sys.path.insert(0, workflow.basedir)  # the wsss package, also where it is not pip-installed

from wsss.config import check_download_urls, validate_config

if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate_config(config, "the workflow configuration")
check_download_urls(config, "the workflow configuration")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/downloads.smk"
include: "workflow/rules/data.smk"


if PRETRAIN_ENABLED:

    include: "workflow/rules/pretrain.smk"


include: "workflow/rules/classifier.smk"
include: "workflow/rules/cams.smk"
include: "workflow/rules/pseudo_labels.smk"
include: "workflow/rules/segmentation.smk"


if MECHANISM:

    include: "workflow/rules/mechanism.smk"


include: "workflow/rules/report.smk"


localrules:
    all,
    download,
    gather_cams,
    index_ground_truth,
    results_table,


rule all:
    default_target: True
    input:
        BENCHMARK_CSV,
        BENCHMARK_MD,
        PROVENANCE_CSV,
        RESOLVED_CONFIG,
        [path for experiment in RUN for path in experiment_figures(experiment)],
        [path for experiment in RUN for path in sharded_artifacts(experiment)],
        [path for experiment in RUN for path in test_archives(experiment)],
        [f"{PRETRAIN}/figures/classifier_curve.png"] if USES_PRETRAINING else [],


onerror:
    # A failed run leaves no table that could pass for current: the next successful run writes it again.
    for stale in (BENCHMARK_CSV, BENCHMARK_MD, PROVENANCE_CSV, RESOLVED_CONFIG):
        if os.path.exists(stale):
            os.remove(stale)
            print(f"removed {stale}: the run failed, so it may no longer match the results", file=sys.stderr)
