# Dataset preparation and indexing. The built-in dataset is generated; VOC 2012 + SBD and COCO 2014 are assembled
# from their downloaded archives (dataset.archives names the `downloads` entries); a VOC-layout tree
# (dataset.source: voc) is read where it lies. Either way `index_dataset` checks the splits the run uses and records every file's
# content hash in the manifest, which every stage reads the data through; a file changed in place changes the
# rule's `check` param, so the dataset is indexed again and everything downstream recomputed.


if config["dataset"]["source"] != "voc":

    rule prepare_dataset:
        input:
            **{role: filled(rules.download.output.out, name=name) for role, name in dataset_archives(config).items()},
        output:
            out=directory(DATA_ROOT),
        log:
            f"{RESULTS}/logs/prepare_dataset.log",
        benchmark:
            f"{RESULTS}/benchmarks/prepare_dataset.tsv"
        conda:
            ENV
        threads: threads("prepare")
        resources:
            **resources("prepare"),
        params:
            settings=dataset_settings(config),
            code_version=code("prepare_dataset.py"),
        script:
            "../scripts/prepare_dataset.py"


# The dataset's folder as the rules read it: prepare_dataset's output, or a VOC-layout tree read where it lies
# (dataset.source voc), which no rule makes.
DATASET_FOLDER = rules.prepare_dataset.output.out if config["dataset"]["source"] != "voc" else DATA_ROOT


rule index_dataset:
    input:
        dataset=DATASET_FOLDER,
    output:
        out=MANIFEST,
    log:
        f"{RESULTS}/logs/index_dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/index_dataset.tsv"
    conda:
        ENV
    threads: threads("prepare")
    resources:
        **resources("prepare"),
    params:
        splits=json.dumps(index_specs(config), sort_keys=True),
        check=lambda wildcards: index_check(MANIFEST, DATA_ROOT),
        code_version=code("index_dataset.py"),
    script:
        "../scripts/index_dataset.py"
