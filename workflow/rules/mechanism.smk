# The mechanism measurements of the built-in dataset, whose parts/ folder says where each object's body and marking
# are: how much of each the seeds (at a fixed background false-positive rate) and the pseudo labels cover, and, for
# an experiment with the semantic aggregation, its CAMs with the aggregate zeroed at inference. Only the two
# evaluation rules here read parts/ (docs/evaluation.md).


# The CAMs of the score and val splits with the aggregate zeroed: the val maps give the ablated seeds their own
# threshold choices, as the full CAMs get theirs on tuning/cams_val.h5.
rule extract_cams_without_aggregation:
    input:
        model=rules.train_classifier.output.model,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{EXP}/mechanism/cams_no_aggregation_{{split}}.h5",
    log:
        f"{LOGS}/extract_cams_without_aggregation-{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/extract_cams_without_aggregation-{{split}}.tsv"
    wildcard_constraints:
        experiment=names_regex(ABLATED),
        split=names_regex([SCORE_SPLIT, VAL_SPLIT]),
    conda:
        ENV
    threads: threads("cams")
    resources:
        **resources("cams"),
    params:
        settings=settings("cam"),
        split=lambda wildcards: wildcards.split,
        ablation="aggregation",
        code_version=code("extract_cams.py"),
    script:
        "../scripts/extract_cams.py"


rule evaluate_mechanism:
    input:
        cams=rules.gather_cams.output.out,
        val_cams=rules.extract_val_cams.output.out,
        pseudo_labels=rules.evaluate_pseudo_labels.output.index,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{EXP}/metrics/mechanism_{SCORE_SPLIT}.json",
    log:
        f"{LOGS}/evaluate_mechanism.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_mechanism.tsv"
    wildcard_constraints:
        experiment=names_regex([name for name in EXPERIMENTS if not trains_on_ground_truth(name)]),
    conda:
        ENV
    threads: threads("evaluation")
    resources:
        **resources("evaluation"),
    params:
        settings=settings("mechanism"),
        split=SCORE_SPLIT,
        val_split=VAL_SPLIT,
        code_version=code("evaluate_mechanism.py"),
    script:
        "../scripts/evaluate_mechanism.py"


rule evaluate_cams_without_aggregation:
    input:
        cams=filled(rules.extract_cams_without_aggregation.output.out, split=SCORE_SPLIT),
        val_cams=filled(rules.extract_cams_without_aggregation.output.out, split=VAL_SPLIT),
        model=rules.train_classifier.output.model,
        history=rules.train_classifier.output.history,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{EXP}/metrics/cam_no_aggregation_{SCORE_SPLIT}.json",
    log:
        f"{LOGS}/evaluate_cams_without_aggregation.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_cams_without_aggregation.tsv"
    wildcard_constraints:
        experiment=names_regex(ABLATED),
    conda:
        ENV
    threads: threads("evaluation")
    resources:
        **resources("evaluation"),
    params:
        settings=settings("cam", "mechanism"),
        split=SCORE_SPLIT,
        val_split=VAL_SPLIT,
        code_version=code("evaluate_cams_without_aggregation.py"),
    script:
        "../scripts/evaluate_cams_without_aggregation.py"
