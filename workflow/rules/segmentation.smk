# DeepLab-v2 on the pseudo labels (or the true masks: the oracle), then predictions and mIoU on the
# evaluation split.


rule index_ground_truth:
    input:
        dataset=DATA_ROOT,
    output:
        out=f"{EXP}/ground_truth/index.txt",
    params:
        split=TRAIN_SPLIT,
    log:
        f"{LOGS}/index_ground_truth.log",
    conda:
        ENV
    script:
        "../scripts/index_ground_truth.py"


rule train_segmentation:
    input:
        labels=segmentation_labels,
        dataset=DATA_ROOT,
    output:
        model=f"{EXP}/segmentation/model.pt",
        history=f"{EXP}/segmentation/history.json",
        curve=f"{EXP}/figures/segmentation_curve.png",
    params:
        settings=settings("segmentation"),
        checkpoint_dir=f"{EXP}/checkpoints/segmentation",
    threads: THREADS
    log:
        f"{LOGS}/train_segmentation.log",
    benchmark:
        f"{BENCHMARKS}/train_segmentation.tsv"
    conda:
        ENV
    script:
        "../scripts/train_segmentation.py"


rule evaluate_segmentation:
    input:
        model=f"{EXP}/segmentation/model.pt",
        dataset=DATA_ROOT,
    output:
        predictions=directory(f"{EXP}/segmentation/predictions_{EVAL_SPLIT}"),
        out=f"{EXP}/metrics/segmentation_{EVAL_SPLIT}.json",
        figure=f"{EXP}/figures/segmentation_{EVAL_SPLIT}.png",
    params:
        settings=settings("segmentation", "crf"),
        split=EVAL_SPLIT,
    threads: THREADS
    log:
        f"{LOGS}/evaluate_segmentation.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_segmentation.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_segmentation.py"
