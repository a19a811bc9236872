"""config/README.md documents every key of config/schema.yaml, with the schema's default, and every config file."""

import re

import pytest
import yaml

from wsss.core.config import load_schema

from conftest import REPO

README = REPO / "config" / "README.md"
NO_DEFAULT = "—"


def schema_keys(schema: dict, prefix: str = "") -> dict[str, object]:
    """Every key of the schema as a dotted path -> its default (NO_DEFAULT where it has none). A map whose entries
    are named by the user (downloads, experiments) is spelled `<name>`; the resource stages share their keys,
    documented once as `resources.<stage>.KEY`."""
    keys = {}
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        keys[path] = sub.get("default", NO_DEFAULT)
        if prefix == "resources." and "properties" in sub:
            keys.update({f"resources.<stage>.{key}": NO_DEFAULT for key in sub["properties"]})
            continue
        keys.update(schema_keys(sub, f"{path}."))
        entries = sub.get("additionalProperties")
        if isinstance(entries, dict) and "properties" in entries:
            keys.update(schema_keys(entries, f"{path}.<name>."))
    return keys


def documented_keys() -> dict[str, str]:
    """The key column of the README's tables -> the default column's text."""
    rows = re.findall(r"^\| `([^`]+)` \| (`[^`]*`|—) \|", README.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_every_schema_key_has_its_line_in_the_config_readme():
    missing = sorted(set(schema_keys(load_schema())) - set(documented_keys()))
    assert not missing, f"config/README.md lacks these schema keys: {missing}"


def test_the_config_readme_documents_no_key_the_schema_lacks():
    stale = sorted(set(documented_keys()) - set(schema_keys(load_schema())))
    assert not stale, f"config/README.md documents keys the schema does not have: {stale}"


@pytest.mark.parametrize("section", sorted(load_schema()["properties"]))
def test_each_top_level_section_has_its_heading(section):
    assert f"\n### `{section}`\n" in README.read_text()


def test_the_documented_defaults_are_the_schemas():
    documented = documented_keys()
    wrong = {}
    for path, default in schema_keys(load_schema()).items():
        if path not in documented:
            continue
        shown = documented[path]
        value = NO_DEFAULT if shown == NO_DEFAULT else yaml.safe_load(shown.strip("`"))
        if value != default:
            wrong[path] = (shown, default)
    assert not wrong, f"config/README.md shows other defaults than config/schema.yaml (shown, schema): {wrong}"


def test_every_config_file_is_described():
    text = README.read_text()
    missing = [path.name for path in sorted((REPO / "config").glob("*.yaml")) if f"| `{path.name}` |" not in text]
    assert not missing, f"config/README.md does not say what these are for: {missing}"
