import re

import yaml

from conftest import REPO


def requirement_lines(text):
    return [re.sub(r"\s+#.*", "", line).strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_conda_environment_pins_match_requirements():
    env = yaml.safe_load((REPO / "envs" / "wsss.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert sorted(pip) == sorted(requirement_lines((REPO / "requirements.txt").read_text()))


def test_readme_shows_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
