# DeepLab-v2 on the pseudo labels (or the true masks: the oracle), then predictions and mIoU on the
# val split (and a labelled test split). More than one GPU (resources.segmentation.gpus): the training runs
# under torchrun.


rule index_ground_truth:
    input:
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        out=f"{EXP}/ground_truth/index.txt",
    log:
        f"{LOGS}/index_ground_truth.log",
    localrule: True
    conda:
        ENV
    params:
        split=TRAIN_SPLIT,
        code_version=code("index_ground_truth.py"),
    script:
        "../scripts/index_ground_truth.py"


# What later jobs make from DeepLab-v2's model (globs, the same whatever splits are scored, so that changing those
# does not rerun the training): a training removes them as it starts, so that a failed or killed one leaves no
# predictions or metrics of the model it was replacing.
MADE_FROM_THE_SEGMENTATION_MODEL = [
    f"{EXP}/segmentation/predictions_*",
    f"{EXP}/metrics/segmentation_*.json",
    f"{EXP}/figures/segmentation_*.png",
    f"{EXP}/figures/predictions_*.png",
    f"{EXP}/test_predictions.tar.gz",
]


# The labels DeepLab-v2 trains on (the pseudo labels, or the true masks for an oracle), the dataset and, when set,
# its starting weights (a missing or unusable weights file stops the run before any job).
rule train_segmentation:
    input:
        unpack(
            lambda wildcards: {
                "labels": filled(
                    (
                        rules.index_ground_truth.output.out
                        if trains_on_ground_truth(wildcards.experiment)
                        else rules.evaluate_pseudo_labels.output.index
                    ),
                    experiment=wildcards.experiment,
                ),
                "dataset": DATASET_FOLDER,
                "manifest": rules.index_dataset.output.out,
                **starting_weights(wildcards.experiment, "segmentation"),
            }
        ),
    output:
        model=f"{EXP}/segmentation/model.pt",
        history=f"{EXP}/segmentation/history.json",
        curve=report(
            f"{EXP}/figures/segmentation_curve.png",
            caption="../report/segmentation_curve.rst",
            category="DeepLab-v2",
            subcategory="{experiment}",
        ),
    log:
        f"{LOGS}/train_segmentation.log",
    benchmark:
        f"{BENCHMARKS}/train_segmentation.tsv"
    conda:
        ENV
    threads: threads("segmentation")
    resources:
        **resources("segmentation"),
    params:
        settings=settings("segmentation"),
        checkpoint_dir=f"{EXP}/checkpoints/segmentation",
        outdated=MADE_FROM_THE_SEGMENTATION_MODEL,
        code_version=code("train_segmentation.py"),
    script:
        "../scripts/train_segmentation.py"


# Scored on the val split (the tuning split) and, when it is labelled, on the held-out test split.
rule evaluate_segmentation:
    input:
        model=rules.train_segmentation.output.model,
        dataset=DATASET_FOLDER,
        manifest=rules.index_dataset.output.out,
    output:
        predictions=directory(f"{EXP}/segmentation/predictions_{{split}}"),
        out=f"{EXP}/metrics/segmentation_{{split}}.json",
        figure=report(
            f"{EXP}/figures/segmentation_{{split}}.png",
            caption="../report/segmentation_predictions.rst",
            category="DeepLab-v2",
            subcategory="{experiment}",
        ),
    log:
        f"{LOGS}/evaluate_segmentation-{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_segmentation-{{split}}.tsv"
    wildcard_constraints:
        split=names_regex(SEGMENTATION_SPLITS),
    conda:
        ENV
    threads: threads("predict")
    resources:
        **resources("predict"),
    params:
        settings=settings("segmentation"),
        split=lambda wildcards: wildcards.split,
        code_version=code("evaluate_segmentation.py"),
    script:
        "../scripts/evaluate_segmentation.py"


# A test split without masks (dataset.test_labelled false): predictions only, packed as the evaluation server
# expects them.
if not TEST_LABELLED:

    rule predict_test:
        input:
            model=rules.train_segmentation.output.model,
            dataset=DATASET_FOLDER,
            manifest=rules.index_dataset.output.out,
        output:
            predictions=directory(f"{EXP}/segmentation/predictions_{TEST_SPLIT}"),
            archive=f"{EXP}/test_predictions.tar.gz",
            figure=report(
                f"{EXP}/figures/predictions_{TEST_SPLIT}.png",
                caption="../report/test_predictions.rst",
                category="DeepLab-v2",
                subcategory="{experiment}",
            ),
        log:
            f"{LOGS}/predict_test.log",
        benchmark:
            f"{BENCHMARKS}/predict_test.tsv"
        conda:
            ENV
        threads: threads("predict")
        resources:
            **resources("predict"),
        params:
            settings=settings("segmentation"),
            split=TEST_SPLIT,
            code_version=code("predict_test.py"),
        script:
            "../scripts/predict_test.py"
