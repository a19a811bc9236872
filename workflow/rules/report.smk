# The results table over every experiment and stage, each row's provenance, and the resolved configuration;
# all three, with the figures, make up `snakemake --report report.html` (captions: workflow/report/).


rule results_table:
    input:
        metrics=[path for experiment in RUN for path in experiment_metrics(experiment)],
        mechanism=[path for experiment in RUN for path in mechanism_metrics(experiment)],
        histories=list(training_histories().values()),
    output:
        csv=report(BENCHMARK_CSV, caption="../report/results_table.rst", category="Results"),
        markdown=report(BENCHMARK_MD, caption="../report/results_markdown.rst", category="Results"),
        provenance=report(PROVENANCE_CSV, caption="../report/provenance.rst", category="Results"),
        resolved_config=report(RESOLVED_CONFIG, caption="../report/config.rst", category="Results"),
    log:
        "results/logs/results_table.log",
    localrule: True
    conda:
        ENV
    params:
        dataset_name=DATASET,
        metrics=[f"{experiment}={path}" for experiment in RUN for path in experiment_metrics(experiment)],
        mechanism=[f"{experiment}={path}" for experiment in RUN for path in mechanism_metrics(experiment)],
        histories=[f"{key}={path}" for key, path in training_histories().items()],
        benchmarks=[f"{experiment}={filled(BENCHMARKS, experiment=experiment)}" for experiment in RUN]
        + ([f"pretrain={PRETRAIN}/benchmarks"] if USES_PRETRAINING else []),
        code_version=code("results_table.py"),
    script:
        "../scripts/results_table.py"
