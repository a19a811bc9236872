# CAM extraction in shards (one job each, batched on the GPU when there is one), then an HDF5 index.


rule extract_cams:
    input:
        model=f"{EXP}/classifier/model.pt",
        dataset=DATA_ROOT,
    output:
        f"{EXP}/cams/shard-{{shard}}-of-{{num_shards}}.h5",
    params:
        settings=settings("cam"),
        split=TRAIN_SPLIT,
    threads: THREADS
    log:
        f"{LOGS}/extract_cams-{{shard}}-of-{{num_shards}}.log",
    benchmark:
        f"{BENCHMARKS}/extract_cams-{{shard}}-of-{{num_shards}}.tsv"
    conda:
        ENV
    shell:
        "{PYTHON} {SCRIPTS}/extract_cams.py --settings {params.settings:q} --threads {threads}"
        " --model {input.model} --dataset {input.dataset} --split {params.split}"
        " --shard {wildcards.shard} --num-shards {wildcards.num_shards} --out {output} > {log} 2>&1"


rule gather_cams:
    input:
        shard_paths(f"{RESULTS}/{{experiment}}/cams/shard-{{shard}}-of-{{num_shards}}.h5", "cam"),
    output:
        f"{EXP}/cams/cams.h5",
    log:
        f"{LOGS}/gather_cams.log",
    conda:
        ENV
    shell:
        "{PYTHON} {SCRIPTS}/gather_cams.py --out {output} {input} > {log} 2>&1"


rule evaluate_cams:
    input:
        cams=f"{EXP}/cams/cams.h5",
        dataset=DATA_ROOT,
    output:
        metrics=f"{EXP}/metrics/cam_{TRAIN_SPLIT}.json",
        sweep=f"{EXP}/figures/cam_threshold_sweep.png",
        overlays=f"{EXP}/figures/cam_overlays.png",
    params:
        settings=settings("cam"),
        split=TRAIN_SPLIT,
    log:
        f"{LOGS}/evaluate_cams.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_cams.tsv"
    conda:
        ENV
    shell:
        "{PYTHON} {SCRIPTS}/evaluate_cams.py --settings {params.settings:q} --cams {input.cams}"
        " --dataset {input.dataset} --split {params.split} --out {output.metrics}"
        " --sweep-figure {output.sweep} --overlay-figure {output.overlays} > {log} 2>&1"
