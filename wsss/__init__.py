"""Weakly supervised semantic segmentation: the RCA pipeline as an importable package.

One folder per stage, in the order the data flows through them (`workflow/scripts/` wraps their functions
for the shell; docs/architecture.md draws the rooms, their imports and the artifacts each stage writes):

    data/               reading a dataset: voc (the VOC layout, its files and the manifest's reader), manifest
                        (indexing and content-hashing the splits), datasets (torch datasets), parts
      sources/          where a dataset comes from: synthetic/ (the built-in generator), voc2012, coco2014,
                        coco (+ coco_masks: polygons and RLE), assembly (from archives), download
    models/             the networks: backbones, classifier (CAM / RCA heads), rca (bank, contrast,
                        aggregation), deeplab, ops (deterministic ops), bank_measures
    classifier/         pretrain (the built-in data's backbone), train (the classifier on image tags),
                        rca_schedule (RCA's per-batch and per-epoch steps), oaa (CAMs accumulated in training)
    cams/               extract (multi-scale CAMs of the trained classifier), store (the HDF5 CAM files),
                        ablation (the aggregate zeroed at inference)
    pseudo_labels/      make (CAM seeds, dense-CRF pseudo labels), crf, store (shards and the label index)
    segmentation/       train (DeepLab-v2 on the pseudo labels), predict (predictions, the test archive)
    evaluation/         tuning (the choices made on val), evaluate and metrics (mIoU), mechanism, attention and
                        gate (the built-in data's measurements), results_table, figures, seeds (several seeds
                        summarised)
    core/               the infrastructure every stage uses, importing no stage: artifacts, checkpoint,
                        guards, runtime (torch-free) and compute (a torch stage's device and switches),
                        distributed, config, code_version, provenance, cli, and the torch-free
                        helpers of the Snakemake rules (rules, starting_weights, torch_file)
"""

__version__ = "0.1.0"
