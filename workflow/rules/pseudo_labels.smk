# Dense-CRF pseudo labels in shards (every core of the job), then an index and their evaluation. A shard records
# its files' sizes and times; one changed between runs (a label replaced, its list rewritten or not) changes the
# rule's `check` param as the plan is made, so the shard is made again and everything after it recomputed.


# A shard of pseudo labels: the rule's output, and the folder its `check` param looks at.
PSEUDO_LABEL_SHARD = f"{EXP}/pseudo_labels/shard-{{shard}}-of-{{num_shards}}"


# The CAMs, the dataset and, with bg_power 'val', the choice made on val.
rule make_pseudo_labels:
    input:
        unpack(
            lambda wildcards: {
                "cams": filled(rules.gather_cams.output.out, experiment=wildcards.experiment),
                "dataset": DATASET_FOLDER,
                "manifest": rules.index_dataset.output.out,
                **(
                    {"tuning": filled(rules.tune_background.output.out, experiment=wildcards.experiment)}
                    if tunes_bg_power(wildcards.experiment)
                    else {}
                ),
            }
        ),
    output:
        out=directory(PSEUDO_LABEL_SHARD),
    log:
        f"{LOGS}/make_pseudo_labels-{{shard}}-of-{{num_shards}}.log",
    benchmark:
        f"{BENCHMARKS}/make_pseudo_labels-{{shard}}-of-{{num_shards}}.tsv"
    conda:
        ENV
    threads: threads("pseudo_labels")
    resources:
        **resources("pseudo_labels"),
    params:
        settings=lambda wildcards: pseudo_label_settings(config, wildcards.experiment),
        split=TRAIN_SPLIT,
        shard=lambda wildcards: wildcards.shard,
        num_shards=lambda wildcards: wildcards.num_shards,
        # of the wildcards only: Snakemake records no param computed from the output, and so would not compare it
        check=lambda wildcards: folder_check(filled(PSEUDO_LABEL_SHARD, **wildcards)),
        code_version=code("make_pseudo_labels.py"),
    script:
        "../scripts/make_pseudo_labels.py"


rule evaluate_pseudo_labels:
    input:
        unpack(
            lambda wildcards: (
                {"tuning": filled(rules.tune_background.output.out, experiment=wildcards.experiment)}
                if tunes_bg_power(wildcards.experiment)
                else {}
            )
        ),
        shards=shard_paths(rules.make_pseudo_labels.output.out, "pseudo_labels"),
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        index=f"{EXP}/pseudo_labels/index.txt",
        out=f"{EXP}/metrics/pseudo_label_{SCORE_SPLIT}.json",
        figure=report(
            f"{EXP}/figures/pseudo_labels.png",
            caption="../report/pseudo_labels.rst",
            category="Pseudo labels",
            subcategory="{experiment}",
        ),
    log:
        f"{LOGS}/evaluate_pseudo_labels.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_pseudo_labels.tsv"
    conda:
        ENV
    threads: threads("evaluation")
    resources:
        **resources("evaluation"),
    params:
        split=SCORE_SPLIT,
        bg_power=lambda wildcards: resolve_experiment(config, wildcards.experiment)["pseudo_labels"]["bg_power"],
        code_version=code("evaluate_pseudo_labels.py"),
    script:
        "../scripts/evaluate_pseudo_labels.py"
