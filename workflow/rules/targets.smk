# What a run is made of, per experiment, each file as rules.<rule>.output.<name> of the stage that makes it: the
# results table's inputs (report.smk) and what the default target reaches besides the table (Snakefile).
# Functions only, no rules (snakemake --lint wants the two apart), included after every stage's rule file, whose
# outputs they read; mechanism.smk's only where that file is included (MECHANISM: ABLATED experiments only then).


def experiment_metrics(experiment):
    """The metrics files of an experiment, one row of the table each (an oracle has no CAMs or pseudo labels; an
    experiment in ABLATED has a row of its CAMs with the aggregate zeroed)."""
    seeds_and_labels = [
        rules.evaluate_cams.output.out,
        *([rules.evaluate_cams_without_aggregation.output.out] if experiment in ABLATED else []),  # mechanism.smk
        rules.evaluate_pseudo_labels.output.out,
    ]
    scored = [] if trains_on_ground_truth(experiment) else seeds_and_labels
    return [
        *[filled(metrics, experiment=experiment) for metrics in scored],
        *expand(rules.evaluate_segmentation.output.out, experiment=experiment, split=SEGMENTATION_SPLITS),
    ]


def mechanism_metrics(experiment):
    """The mechanism figures of an experiment's seeds and pseudo labels (columns of their rows in the table):
    where the dataset has parts (mechanism.smk) and the experiment has CAMs."""
    if not MECHANISM or trains_on_ground_truth(experiment):
        return []
    return [filled(rules.evaluate_mechanism.output.out, experiment=experiment)]


def training_histories():
    """{"EXPERIMENT:STAGE": history} of each training behind a row (an oracle trains no classifier)."""
    histories = {}
    for experiment in RUN:
        if not trains_on_ground_truth(experiment):
            histories[f"{experiment}:classifier"] = filled(rules.train_classifier.output.history, experiment=experiment)
        histories[f"{experiment}:segmentation"] = filled(rules.train_segmentation.output.history, experiment=experiment)
    return histories


def experiment_figures(experiment):
    """The figures of an experiment: the default target reaches them too, so a rerun redoes any job whose
    outputs are missing."""
    figures = [
        filled(rules.train_segmentation.output.curve, experiment=experiment),
        *expand(rules.evaluate_segmentation.output.figure, experiment=experiment, split=SEGMENTATION_SPLITS),
    ]
    if not trains_on_ground_truth(experiment):
        figures += [
            filled(figure, experiment=experiment)
            for figure in (
                rules.train_classifier.output.curve,
                rules.evaluate_cams.output.sweep_figure,
                rules.evaluate_cams.output.overlay_figure,
                rules.evaluate_pseudo_labels.output.figure,
                rules.tune_background.output.figure,
            )
        ]
    if TEST_SPLIT and not TEST_LABELLED:
        figures.append(filled(rules.predict_test.output.figure, experiment=experiment))
    return figures


def sharded_artifacts(experiment):
    """The CAM and pseudo-label shards of an experiment and the indexes gathered from them (an oracle has none).
    The default target reaches them too: a reader that finds a shard damaged removes it and the index, and the
    next plain run then makes both again, and everything after them, though the later outputs are all there."""
    if trains_on_ground_truth(experiment):
        return []
    return [
        *experiment_shards(rules.extract_cams.output.out, experiment, "cam"),
        filled(rules.gather_cams.output.out, experiment=experiment),
        *experiment_shards(rules.make_pseudo_labels.output.out, experiment, "pseudo_labels"),
        filled(rules.evaluate_pseudo_labels.output.index, experiment=experiment),
    ]


def test_archives(experiment):
    """The evaluation server's archive of an experiment's test predictions (none without a test split)."""
    return (
        [filled(rules.predict_test.output.archive, experiment=experiment)] if TEST_SPLIT and not TEST_LABELLED else []
    )
