# The benchmark table over every experiment and stage.


rule benchmark:
    input:
        [path for experiment in RUN for path in experiment_metrics(experiment)],
    output:
        csv=BENCHMARK_CSV,
        markdown=BENCHMARK_MD,
    params:
        dataset_name=DATASET,
        metrics=[f"{experiment}={path}" for experiment in RUN for path in experiment_metrics(experiment)],
        benchmarks=[f"{experiment}={RESULTS}/{experiment}/benchmarks" for experiment in RUN]
        + ([f"pretrain={PRETRAIN}/benchmarks"] if PRETRAIN_ENABLED else []),
        code_version=code("benchmark.py"),
    log:
        "results/logs/benchmark.log",
    conda:
        ENV
    script:
        "../scripts/benchmark.py"
