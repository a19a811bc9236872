# CAM extraction in shards (one job each, batched on the GPU when there is one), then an HDF5 index; the val
# split's CAMs, on which the background threshold and bg_power are chosen (tune_background); the seeds' scores.


# The classifier's model: train_classifier's, or train_classifier_accumulating's (the same path) for an OAA experiment.
rule extract_cams:
    input:
        model=rules.train_classifier.output.model,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{EXP}/cams/shard-{{shard}}-of-{{num_shards}}.h5",
    log:
        f"{LOGS}/extract_cams-{{shard}}-of-{{num_shards}}.log",
    benchmark:
        f"{BENCHMARKS}/extract_cams-{{shard}}-of-{{num_shards}}.tsv"
    wildcard_constraints:
        experiment=names_regex([name for name in EXPERIMENTS if name not in OAA_CAMS]),
    conda:
        ENV
    threads: threads("cams")
    resources:
        **resources("cams"),
    params:
        settings=settings("cam"),
        split=TRAIN_SPLIT,
        shard=lambda wildcards: wildcards.shard,
        num_shards=lambda wildcards: wildcards.num_shards,
        code_version=code("extract_cams.py"),
    script:
        "../scripts/extract_cams.py"


# cam.protocol accumulated: the shards come from the maps accumulated in training, not from inference (no GPU).
use rule extract_cams as extract_accumulated_cams with:
    input:
        accumulated=rules.train_classifier_accumulating.output.accumulated,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    log:
        f"{LOGS}/extract_accumulated_cams-{{shard}}-of-{{num_shards}}.log",
    benchmark:
        f"{BENCHMARKS}/extract_accumulated_cams-{{shard}}-of-{{num_shards}}.tsv"
    wildcard_constraints:
        experiment=names_regex(OAA_CAMS),
    resources:
        **resources("cams", gpus=0),


rule gather_cams:
    input:
        shards=shard_paths(rules.extract_cams.output.out, "cam"),  # extract_accumulated_cams': the same
    output:
        out=f"{EXP}/cams/cams.h5",
    log:
        f"{LOGS}/gather_cams.log",
    localrule: True
    conda:
        ENV
    params:
        code_version=code("gather_cams.py"),
    script:
        "../scripts/gather_cams.py"


# The val split's CAMs, made as the training split's: from the final classifier, or for cam.protocol accumulated
# from the val maps accumulated in training (extract_accumulated_val_cams).
rule extract_val_cams:
    input:
        model=rules.train_classifier.output.model,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{TUNING}/cams_{VAL_SPLIT}.h5",
    log:
        f"{LOGS}/extract_val_cams.log",
    benchmark:
        f"{BENCHMARKS}/extract_val_cams.tsv"
    wildcard_constraints:
        experiment=names_regex([name for name in EXPERIMENTS if name not in OAA_CAMS]),
    conda:
        ENV
    threads: threads("cams")
    resources:
        **resources("cams"),
    params:
        settings=settings("cam"),
        split=VAL_SPLIT,
        code_version=code("extract_cams.py"),
    script:
        "../scripts/extract_cams.py"


use rule extract_val_cams as extract_accumulated_val_cams with:
    input:
        accumulated=rules.train_classifier_accumulating.output.accumulated_val,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    log:
        f"{LOGS}/extract_accumulated_val_cams.log",
    benchmark:
        f"{BENCHMARKS}/extract_accumulated_val_cams.tsv"
    wildcard_constraints:
        experiment=names_regex(OAA_CAMS),
    resources:
        **resources("cams", gpus=0),


# Every choice behind the seeds and pseudo labels, made on the val split's masks: the background threshold of
# the seeds, and (pseudo_labels.bg_power 'val') the bg_power of the dense-CRF pseudo labels.
rule tune_background:
    input:
        cams=rules.extract_val_cams.output.out,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{TUNING}/background.json",
        figure=report(
            f"{EXP}/figures/tuning_{VAL_SPLIT}.png",
            caption="../report/tuning.rst",
            category="Tuning on val",
            subcategory="{experiment}",
        ),
    log:
        f"{LOGS}/tune_background.log",
    benchmark:
        f"{BENCHMARKS}/tune_background.tsv"
    conda:
        ENV
    threads: threads("pseudo_labels")
    resources:
        **resources("pseudo_labels"),
    params:
        settings=settings("cam", "pseudo_labels", "crf"),
        split=VAL_SPLIT,
        code_version=code("tune_background.py"),
    script:
        "../scripts/tune_background.py"


rule evaluate_cams:
    input:
        cams=rules.gather_cams.output.out,
        tuning=rules.tune_background.output.out,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{EXP}/metrics/cam_{SCORE_SPLIT}.json",
        sweep_figure=report(
            f"{EXP}/figures/cam_threshold_sweep.png",
            caption="../report/cam_threshold_sweep.rst",
            category="CAM seeds",
            subcategory="{experiment}",
        ),
        overlay_figure=report(
            f"{EXP}/figures/cam_overlays.png",
            caption="../report/cam_overlays.rst",
            category="CAM seeds",
            subcategory="{experiment}",
        ),
    log:
        f"{LOGS}/evaluate_cams.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_cams.tsv"
    conda:
        ENV
    threads: threads("evaluation")
    resources:
        **resources("evaluation"),
    params:
        settings=settings("cam"),
        split=SCORE_SPLIT,
        code_version=code("evaluate_cams.py"),
    script:
        "../scripts/evaluate_cams.py"
