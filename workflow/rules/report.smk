# The benchmark table over every experiment and stage.


def experiment_metrics(experiment):
    return [
        f"{RESULTS}/{experiment}/metrics/cam_{TRAIN_SPLIT}.json",
        f"{RESULTS}/{experiment}/metrics/pseudo_label_{TRAIN_SPLIT}.json",
        f"{RESULTS}/{experiment}/metrics/segmentation_{EVAL_SPLIT}.json",
    ]


rule benchmark:
    input:
        [path for experiment in EXPERIMENTS for path in experiment_metrics(experiment)],
    output:
        csv=BENCHMARK_CSV,
        markdown=BENCHMARK_MD,
    params:
        metrics=[f"{experiment}={path}" for experiment in EXPERIMENTS for path in experiment_metrics(experiment)],
        benchmarks=[f"{experiment}={RESULTS}/{experiment}/benchmarks" for experiment in EXPERIMENTS],
    log:
        "results/logs/benchmark.log",
    conda:
        ENV
    shell:
        "{PYTHON} {SCRIPTS}/benchmark.py --dataset-name {DATASET} --csv {output.csv} --markdown {output.markdown}"
        " --benchmarks {params.benchmarks} {params.metrics} > {log} 2>&1"
