# Dataset preparation. The built-in dataset is generated; a VOC-layout tree (dataset.source: voc) is read
# where it lies.


if config["dataset"]["source"] == "synthetic":

    rule prepare_dataset:
        output:
            out=directory(DATA_ROOT),
        params:
            settings=workflow_settings(config, EXPERIMENTS[0], "dataset"),
        log:
            f"{RESULTS}/logs/prepare_dataset.log",
        benchmark:
            f"{RESULTS}/benchmarks/prepare_dataset.tsv"
        conda:
            ENV
        script:
            "../scripts/prepare_dataset.py"
