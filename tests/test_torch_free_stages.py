"""The stages that do not compute with torch never import it (its import costs seconds per job, and about 20 jobs of
every run are such stages); one that imports it after all is told so in its log."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "workflow" / "scripts"


def declares_torch(source: str) -> bool:
    """Whether a stage script declares that it computes with torch: stage_parser(..., uses_torch=True)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "stage_parser":
            return any(keyword.arg == "uses_torch" and keyword.value.value is True for keyword in node.keywords)
    return False


def torch_free_scripts() -> list[Path]:
    return [path for path in sorted(SCRIPTS.glob("*.py"))
            if not path.name.startswith("_") and not declares_torch(path.read_text())]


def test_the_stages_declared_without_torch_import_none_of_it():
    scripts = torch_free_scripts()
    assert {"make_pseudo_labels.py", "evaluate_cams.py", "tune_background.py", "prepare_dataset.py",
            "results_table.py"} <= {path.name for path in scripts}
    assert "extract_cams.py" not in {path.name for path in scripts}
    # each script's module-level imports, run one after another in one interpreter: the first to load torch is named
    probe = textwrap.dedent("""
        import ast, json, sys
        for path in sys.argv[1:]:
            tree = ast.parse(open(path).read())
            imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            exec(compile(ast.Module(body=imports, type_ignores=[]), path, "exec"), {})
            if "torch" in sys.modules:
                print(json.dumps(path)); break
        """)
    result = subprocess.run([sys.executable, "-c", probe, *map(str, scripts)], cwd=SCRIPTS, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"{json.loads(result.stdout)} imports torch but does not declare uses_torch=True"


def test_a_stage_declared_without_torch_that_loads_it_is_warned_at_exit():
    script = textwrap.dedent("""
        import sys
        from wsss.core.cli import parse_stage_args, run_record, stage_parser

        parser = stage_parser("probe", ("cam",), uses_torch=False)
        parse_stage_args(parser, argv=["--config", "config/tiny.yaml"])
        assert "torch" not in sys.modules
        print(run_record()["switches"], run_record()["provenance"]["device"])
        if sys.argv[1] == "load":
            import torch  # noqa: F401
        """)
    repo = SCRIPTS.parent.parent
    for load, warned in (("load", True), ("no", False)):
        result = subprocess.run([sys.executable, "-c", script, load], cwd=repo, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "{'torch': 'torch not used by this stage'} cpu\n"
        assert ("declared without torch (stage_parser(uses_torch=False)) but loaded it" in result.stderr) == warned
