# The RCA weakly supervised segmentation pipeline: image tags -> classifier -> CAMs -> CRF pseudo labels
# -> DeepLab-v2 -> benchmark table. `snakemake -c N` runs it on the built-in dataset (config/config.yaml);
# `--configfile FILE` runs another configuration instead (defaults: config/schema.yaml).
import os
import sys

# This Snakefile's folder, the repository: where the workflow's own files are (package, scripts, configs). Not
# workflow.basedir, which is the main Snakefile's folder: another project's when this workflow is a module of it
# (docs/module.md).
WORKFLOW_DIR = str(workflow.current_basedir)
sys.path.insert(0, WORKFLOW_DIR)  # the wsss package, also where it is not pip-installed

from wsss.core.config import check_download_urls, validate_config

# The built-in dataset's config, unless --configfile gives another; a module is given its config by the project
# (`config:` of its `module`), and Snakemake then skips this.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(WORKFLOW_DIR, "config", "config.yaml")


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


include: "workflow/rules/targets.smk"
include: "workflow/rules/report.smk"


# The local rules (run on the submitting host, not submitted) say so themselves, `localrule: True`, rather than in a
# `localrules:` list, whose names a module's `use rule * from ... as prefix_*` would not rename.
rule all:
    default_target: True
    input:
        rules.results_table.output.csv,
        rules.results_table.output.markdown,
        rules.results_table.output.provenance,
        rules.results_table.output.resolved_config,
        [path for experiment in RUN for path in experiment_figures(experiment)],
        [path for experiment in RUN for path in sharded_artifacts(experiment)],
        [path for experiment in RUN for path in test_archives(experiment)],
        [rules.pretrain_backbone.output.curve] if USES_PRETRAINING else [],
    localrule: True


onerror:
    # A failed run leaves no table that could pass for current: the next successful run writes it again.
    for stale in (BENCHMARK_CSV, BENCHMARK_MD, PROVENANCE_CSV, RESOLVED_CONFIG):
        if os.path.exists(stale):
            os.remove(stale)
            print(f"removed {stale}: the run failed, so it may no longer match the results", file=sys.stderr)
