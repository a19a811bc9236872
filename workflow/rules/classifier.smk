# Classifier training on image tags. Checkpoints live under params.checkpoint_dir (not an output), so
# they survive a failed or killed job and the rerun resumes from them; a finished job removes them.
# More than one GPU (resources.classifier.gpus): the script runs itself under torchrun.


# Every classifier training's outputs; an OAA experiment's (train_classifier_accumulating) has the accumulated CAMs too.
CLASSIFIER_OUTPUTS = {
    "model": f"{EXP}/classifier/model.pt",
    "history": f"{EXP}/classifier/history.json",
    "curve": report(
        f"{EXP}/figures/classifier_curve.png",
        caption="../report/classifier_curve.rst",
        category="Classifier training",
        subcategory="{experiment}",
    ),
}


# The dataset and the starting weights: the pretrained backbone (pretrain.smk, included whenever an experiment starts
# from it), or classifier.backbone.weights when set (checked as the plan is made), or none (random weights).
rule train_classifier:
    input:
        unpack(
            lambda wildcards: {
                "dataset": DATASET_FOLDER,
                "manifest": rules.index_dataset.output.out,
                **(
                    {"backbone_weights": rules.pretrain_backbone.output.backbone}
                    if starts_from_pretraining(wildcards.experiment)
                    else starting_weights(wildcards.experiment, "classifier")
                ),
            }
        ),
    output:
        **CLASSIFIER_OUTPUTS,
    log:
        f"{LOGS}/train_classifier.log",
    benchmark:
        f"{BENCHMARKS}/train_classifier.tsv"
    wildcard_constraints:
        experiment=names_regex([name for name in EXPERIMENTS if name not in ACCUMULATING]),
    conda:
        ENV
    threads: threads("classifier")
    resources:
        **resources("classifier"),
    params:
        settings=settings("classifier"),
        checkpoint_dir=f"{EXP}/checkpoints/classifier",
        split=TRAIN_SPLIT,
        code_version=code("train_classifier.py"),
    script:
        "../scripts/train_classifier.py"


# Experiments with online attention accumulation (OAA) also write the CAMs accumulated in training, and those
# of the val split, accumulated in the same passes (for the background threshold chosen on val).
use rule train_classifier as train_classifier_accumulating with:
    output:
        **CLASSIFIER_OUTPUTS,
        accumulated=f"{EXP}/classifier/accumulated_cams.h5",
        accumulated_val=f"{EXP}/classifier/accumulated_cams_{VAL_SPLIT}.h5",
    wildcard_constraints:
        experiment=names_regex(ACCUMULATING),
    params:
        val_split=VAL_SPLIT,
