# The built-in dataset's stand-in for ImageNet weights (pretrain.images > 0, wsss/classifier/pretrain.py): a
# separately generated tagged set, the plain classifier trained on it, its backbone the start of every
# experiment's classifier.


use rule prepare_dataset as prepare_pretrain_dataset with:
    output:
        out=directory(PRETRAIN_DATA_ROOT),
    log:
        f"{PRETRAIN}/logs/prepare_dataset.log",
    benchmark:
        f"{PRETRAIN}/benchmarks/prepare_dataset.tsv"
    params:
        settings=json.dumps(pretrain_dataset_settings(config), sort_keys=True),
        code_version=code("prepare_dataset.py"),


use rule index_dataset as index_pretrain_dataset with:
    input:
        dataset=rules.prepare_pretrain_dataset.output.out,
    output:
        out=PRETRAIN_MANIFEST,
    log:
        f"{PRETRAIN}/logs/index_dataset.log",
    benchmark:
        f"{PRETRAIN}/benchmarks/index_dataset.tsv"
    params:
        splits=json.dumps(["train"]),
        check=lambda wildcards: index_check(PRETRAIN_MANIFEST, PRETRAIN_DATA_ROOT),
        code_version=code("index_dataset.py"),


rule pretrain_backbone:
    input:
        dataset=rules.prepare_pretrain_dataset.output.out,
        manifest=rules.index_pretrain_dataset.output.out,
    output:
        backbone=PRETRAINED_BACKBONE,
        model=f"{PRETRAIN}/classifier/model.pt",
        history=f"{PRETRAIN}/classifier/history.json",
        curve=report(
            f"{PRETRAIN}/figures/classifier_curve.png",
            caption="../report/pretrain_curve.rst",
            category="Classifier training",
            subcategory="pretraining",
        ),
    log:
        f"{PRETRAIN}/logs/pretrain_backbone.log",
    benchmark:
        f"{PRETRAIN}/benchmarks/pretrain_backbone.tsv"
    conda:
        ENV
    threads: threads("pretrain")
    resources:
        **resources("pretrain"),
    params:
        settings=json.dumps(pretrain_classifier_settings(config), sort_keys=True),
        checkpoint_dir=f"{PRETRAIN}/checkpoints/classifier",
        code_version=code("pretrain_backbone.py"),
    script:
        "../scripts/pretrain_backbone.py"
