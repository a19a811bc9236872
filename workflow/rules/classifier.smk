# Classifier training on image tags. Checkpoints live under params.checkpoints (not an output), so they
# survive a failed or killed job and the rerun resumes from them.


rule train_classifier:
    input:
        dataset=DATA_ROOT,
    output:
        model=f"{EXP}/classifier/model.pt",
        history=f"{EXP}/classifier/history.json",
        curve=f"{EXP}/figures/classifier_curve.png",
    params:
        settings=settings("classifier"),
        checkpoints=f"{EXP}/checkpoints/classifier",
        split=TRAIN_SPLIT,
    threads: THREADS
    log:
        f"{LOGS}/train_classifier.log",
    benchmark:
        f"{BENCHMARKS}/train_classifier.tsv"
    conda:
        ENV
    shell:
        "{PYTHON} {SCRIPTS}/train_classifier.py --settings {params.settings:q} --threads {threads}"
        " --dataset {input.dataset} --split {params.split} --model {output.model} --history {output.history}"
        " --curve {output.curve} --checkpoint-dir {params.checkpoints} > {log} 2>&1"
