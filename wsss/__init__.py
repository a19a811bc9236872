"""Weakly supervised semantic segmentation: the RCA pipeline as an importable package.

Stages (each a module with plain functions; `workflow/scripts/` wraps them for the shell):
    data.synthetic   built-in dataset generator (VOC layout)
    data.voc         VOC-format reading/writing: palette PNGs, list files, class lists
    models           VGG-16-shaped classifier backbone, DeepLab-v2
    train_classifier, cam, crf, pseudo_labels, train_segmentation, evaluate, results_table
"""

__version__ = "0.1.0"
