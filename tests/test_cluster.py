"""`snakemake --profile slurm` against a real single-node SLURM (slurmctld + slurmd on this host, two GPUs declared
as GRES): every job of the tiny config's `cam` experiment but the local rules goes through sbatch, GPU stages ask for a
GPU and CPU stages do not, and its rows of the table equal a local run's. Skipped, saying why, where SLURM cannot start (not root, slurm-wlm not installed);
.ci/run installs it under CI=true."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, table_rows
from slurm_cluster import SlurmUnavailable, job_records, single_node_cluster

# The tiny config's `cam` experiment (every kind of stage, half the jobs of the whole config: the SLURM plugin's
# status checks back off to tens of seconds, so each job costs more here than locally).
EXPERIMENT = "cam"
GPU_RULES = {"pretrain_backbone", "train_classifier", "extract_cams", "extract_val_cams", "train_segmentation",
             "evaluate_segmentation"}
CPU_RULES = {"prepare_dataset", "prepare_pretrain_dataset", "index_dataset", "index_pretrain_dataset",
             "tune_background", "evaluate_cams", "make_pseudo_labels", "evaluate_pseudo_labels", "evaluate_mechanism"}
LOCAL_RULES = {"gather_cams", "results_table", "all"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(single_node_cluster(tmp_path_factory.mktemp("slurm"), gpus=2))
        except SlurmUnavailable as reason:
            pytest.skip(f"no SLURM here: {reason}")
        yield started


def rule_of(record: dict) -> str:
    """The rule a SLURM job ran (the Snakemake plugin puts it in the job's comment)."""
    return re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", record["Comment"]).group(1)


@pytest.mark.slow
def test_the_tiny_config_runs_through_sbatch_with_gpus_where_they_belong(cluster, tiny_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm_run")
    shutil.copytree(REPO / "slurm", workdir / "slurm")  # `snakemake --profile slurm` from where the profile is
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--profile", "slurm",
               "--configfile", str(TINY_CONFIG), "--config", f"run=[{EXPERIMENT}]",
               "--slurm-init-seconds-before-status-checks", "2"]
    before = {record["JobId"] for record in job_records()}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1800,
                            env={**os.environ, "WSSS_NO_PROGRESS": "1"})
    assert result.returncode == 0, result.stderr[-5000:]

    jobs = [record for record in job_records() if record["JobId"] not in before]
    submitted = [rule_of(record) for record in jobs]
    planned = re.findall(r"^(?:local)?rule (\w+):$", result.stdout + result.stderr, flags=re.MULTILINE)
    assert sorted(submitted) == sorted(rule for rule in planned if rule not in LOCAL_RULES)
    assert set(submitted) == GPU_RULES | CPU_RULES
    for record in jobs:
        assert record["JobState"] == "COMPLETED", record
        asks_gpu = record.get("TresPerJob") == "gres:gpu:1"
        assert asks_gpu == (rule_of(record) in GPU_RULES), record
        assert int(record["NumCPUs"]) == 1  # the config's cores per job

    # inside each job step: SLURM's variables, a GPU on the node exactly for the GPU stages
    logs = [path for path in workdir.glob("results/**/logs/*.log") if path.stem.split("-")[0] in GPU_RULES | CPU_RULES]
    assert len(logs) == len(jobs)
    for path in logs:
        environment = json.loads(re.search(r"job environment: (\{.*\})", path.read_text()).group(1))
        assert environment["SLURM_JOB_ID"] in {record["JobId"] for record in jobs}, path
        assert (environment.get("SLURM_GPUS_ON_NODE") == "1") == (path.stem.split("-")[0] in GPU_RULES), path

    # the experiment's rows of the table are the local run's (which ran every experiment)
    assert table_rows(workdir) == [row for row in table_rows(tiny_run) if row["experiment"] == EXPERIMENT]



def test_the_profile_holds_the_keys_a_cluster_without_accounting_needs():
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    assert profile["retries"] >= 1 and profile["rerun-incomplete"] and profile["slurm-requeue"]
    assert {"runtime", "mem_mb"} <= set(profile["default-resources"])
