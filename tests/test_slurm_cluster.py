"""A real single-node SLURM cluster schedules a GPU request (skipped where it cannot start: not root, no SLURM)."""

import contextlib
import subprocess
import time

import pytest

from slurm_cluster import SlurmUnavailable, job_records, single_node_cluster

JOB_TIMEOUT_S = 60
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


@pytest.fixture
def cluster(tmp_path):
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(single_node_cluster(tmp_path / "slurm", gpus=2))
        except SlurmUnavailable as reason:
            pytest.skip(str(reason))
        yield started


def submit(output, *options) -> str:
    """Queue a batch job that writes its SLURM and CUDA variables to `output`; return its id."""
    script = "env | grep -E '^(SLURM_|CUDA_VISIBLE_DEVICES)' | sort"
    result = subprocess.run(["sbatch", "--parsable", "--mem=100M", f"--output={output}", *options, "--wrap", script],
                            capture_output=True, text=True, check=True, cwd=output.parent)
    return result.stdout.strip()


def wait_until_finished(job_ids: list[str]) -> dict[str, dict]:
    """Job records by id once every job in `job_ids` has ended (sbatch --wait would poll every few seconds)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        records = {record["JobId"]: record for record in job_records()}
        if all(records[job_id]["JobState"] in FINAL_STATES for job_id in job_ids):
            return records
        time.sleep(0.2)
    pytest.fail(f"jobs {job_ids} still running after {JOB_TIMEOUT_S} s")


def test_gpu_request_is_scheduled(cluster, tmp_path):
    gpu_output, cpu_output = tmp_path / "gpu.env", tmp_path / "cpu.env"
    gpu_id, cpu_id = submit(gpu_output, "--gpus=1"), submit(cpu_output)
    records = wait_until_finished([gpu_id, cpu_id])

    assert records[gpu_id]["JobState"] == records[cpu_id]["JobState"] == "COMPLETED"
    gpu_env, cpu_env = gpu_output.read_text().splitlines(), cpu_output.read_text().splitlines()
    assert "SLURM_GPUS_ON_NODE=1" in gpu_env
    assert "CUDA_VISIBLE_DEVICES=0" in gpu_env
    assert not [line for line in cpu_env if "GPU" in line or "CUDA" in line]
    assert records[gpu_id]["TresPerJob"] == "gres:gpu:1"
    assert not [key for key in records[cpu_id] if key.startswith("TresPer")]
