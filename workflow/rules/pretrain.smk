# The built-in dataset's stand-in for ImageNet weights (pretrain.images > 0, wsss/pretrain.py): a
# separately generated tagged set, the plain classifier trained on it, its backbone the start of every
# experiment's classifier.


rule prepare_pretrain_dataset:
    output:
        out=directory(PRETRAIN_DATA_ROOT),
    params:
        settings=json.dumps(pretrain_dataset_settings(config), sort_keys=True),
    log:
        f"{PRETRAIN}/logs/prepare_dataset.log",
    benchmark:
        f"{PRETRAIN}/benchmarks/prepare_dataset.tsv"
    conda:
        ENV
    script:
        "../scripts/prepare_dataset.py"


rule pretrain_backbone:
    input:
        dataset=PRETRAIN_DATA_ROOT,
    output:
        backbone=PRETRAINED_BACKBONE,
        model=f"{PRETRAIN}/classifier/model.pt",
        history=f"{PRETRAIN}/classifier/history.json",
        curve=f"{PRETRAIN}/figures/classifier_curve.png",
    params:
        settings=json.dumps(pretrain_classifier_settings(config), sort_keys=True),
        checkpoint_dir=f"{PRETRAIN}/checkpoints/classifier",
    # compute.threads like every job, although every classifier waits for it: torch on the CPU gives other
    # numbers with other thread counts (2 threads instead of 1 changed seed 0's val by 0.01 to 0.02), and
    # the same config must give the same numbers whatever --cores is
    threads: THREADS
    log:
        f"{PRETRAIN}/logs/pretrain_backbone.log",
    benchmark:
        f"{PRETRAIN}/benchmarks/pretrain_backbone.tsv"
    conda:
        ENV
    script:
        "../scripts/pretrain_backbone.py"
