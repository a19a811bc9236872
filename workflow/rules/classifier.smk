# Classifier training on image tags. Checkpoints live under params.checkpoint_dir (not an output), so
# they survive a failed or killed job and the rerun resumes from them.


rule train_classifier:
    input:
        dataset=DATA_ROOT,
    output:
        model=f"{EXP}/classifier/model.pt",
        history=f"{EXP}/classifier/history.json",
        curve=f"{EXP}/figures/classifier_curve.png",
    params:
        settings=settings("classifier"),
        checkpoint_dir=f"{EXP}/checkpoints/classifier",
        split=TRAIN_SPLIT,
    threads: THREADS
    log:
        f"{LOGS}/train_classifier.log",
    benchmark:
        f"{BENCHMARKS}/train_classifier.tsv"
    conda:
        ENV
    script:
        "../scripts/train_classifier.py"
