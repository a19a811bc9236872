"""The workflow as a Snakemake module of another project's Snakefile, with that project's config (docs/module.md):
it plans the jobs the workflow plans on its own, and a target of it runs in the project's folder."""

import re
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG, snakemake

MANIFEST = "results/tiny/dataset/manifest.json"


def host_project(folder: Path, use_rule: str = "use rule * from rca") -> Path:
    """Another project: its own Snakefile and config file (config/tiny.yaml, copied), the workflow a module of it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "rca.yaml").write_text(TINY_CONFIG.read_text())
    (folder / "Snakefile").write_text(
        'configfile: "config/rca.yaml"\n\n\n'
        "module rca:\n"
        f"    snakefile:\n        {str(REPO / 'workflow' / 'Snakefile')!r}\n"
        "    config:\n        config\n\n\n"
        f"{use_rule}\n"
    )
    return folder / "Snakefile"


def job_counts(output: str) -> dict[str, int]:
    """{rule: jobs} of a dry run's "Job stats" table."""
    table = output[output.index("Job stats"):].split("\n\n")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)
            if rule != "total"}


def dry_run(workdir: Path, *args: str, snakefile: Path | None = None) -> dict[str, int]:
    """{rule: jobs} of a dry run in `workdir`, which must plan without a warning that a local rule is missing (a rule
    named in `localrules:` but renamed by `use rule ... as`, which a cluster run would then submit)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = snakemake(workdir, "--dry-run", *args, **({"snakefile": snakefile} if snakefile else {}))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "localrules directive specifies rules that are not present" not in output, output[-3000:]
    return job_counts(output)


@pytest.mark.slow
def test_as_a_module_with_the_projects_config_it_plans_what_it_plans_alone(tmp_path):
    jobs = dry_run(tmp_path / "alone", "--configfile", str(TINY_CONFIG))
    assert jobs.get("train_classifier_accumulating") == 1 and "download" not in jobs  # the tiny config's plan
    assert dry_run(tmp_path / "host", snakefile=host_project(tmp_path / "host")) == jobs
    renamed = host_project(tmp_path / "renamed", "use rule * from rca as rca_*")
    assert dry_run(tmp_path / "renamed", snakefile=renamed) == {f"rca_{rule}": n for rule, n in jobs.items()}


@pytest.mark.slow
def test_as_a_module_it_prepares_and_indexes_the_dataset_in_the_projects_folder(tmp_path):
    host = tmp_path / "host"
    snakefile = host_project(host)
    result = snakemake(host, MANIFEST, snakefile=snakefile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (host / MANIFEST).is_file() and sorted(path.name for path in (host / "resources" / "tiny").iterdir())
    logs = host / "results" / "tiny" / "logs"
    assert (logs / "prepare_dataset.log").is_file() and (logs / "index_dataset.log").is_file()
