"""The rules as the one source of paths: a rule's input that another rule makes names it through
`rules.<rule>.output.<name>` (or `expand`/an input function built from it), never by spelling the path again.

A static check of the Snakefile and workflow/rules/*.smk, robust to their (snakefmt) formatting: every `input:` and
`output:` section is parsed as the arguments of a call (which is what it is), and every path in it is reduced to a
shape, the text with each wildcard or unknown value as `*` and each path constant (`EXP`, `RESULTS`, ... assigned in
these files) replaced by its own shape, so that f"{EXP}/classifier/model.pt" and
f"{RESULTS}/{wildcards.experiment}/classifier/model.pt" are the same path. The check fails when an input section,
or a function it calls (an input function, or a helper that one calls), holds a path of the shape of some rule's
output. It also checks that every `rules.<rule>.output.<name>` names an output that exists: references inside input
functions and helpers are only resolved when a plan needs them, and a conditional rule file (pretrain.smk,
mechanism.smk) may not be included in the run at hand. Well under a second; no Snakemake run."""

import ast
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO

SOURCES = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
RULE = re.compile(r"^(\s*)(?:rule|checkpoint) (\w+):\s*$")
USE_RULE = re.compile(r"^(\s*)use rule (\w+) as (\w+) with:\s*$")
SECTION = re.compile(r"^(\s*)(input|output):\s*(.*)$")
CONSTANT = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(.*)$")
DEF = re.compile(r"^(\s*)def (\w+)\(")
WILDCARD = re.compile(r"\{[^{}]*\}")
# The flags that wrap an output or input path: the path is their first argument.
WRAPPERS = {"directory", "report", "temp", "temporary", "protected", "touch", "pipe", "service", "ensure", "ancient",
            "local", "update", "before_update"}
REFERENCE = re.compile(r"\brules\.(\w+)\.output\.(\w+)")


@dataclass
class Section:
    path: Path
    line: int  # of the first line of the body
    rule: str
    kind: str  # input or output
    call: ast.Call  # the body as the arguments of a call


@dataclass
class Workflow:
    sections: list[Section] = field(default_factory=list)
    constants: dict[str, ast.expr] = field(default_factory=dict)
    functions: dict[str, tuple[Path, int, ast.AST]] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # use rule PARENT as RULE


def indentation(line: str) -> int:
    return len(line) - len(line.lstrip())


def block(lines: list[str], start: int, indent: int) -> list[str]:
    """The lines from `start` on that are indented deeper than `indent` (blank lines and comments included)."""
    body = []
    for line in lines[start:]:
        if line.strip() and not line.lstrip().startswith("#") and indentation(line) <= indent:
            break
        body.append(line)
    while body and not body[-1].strip():
        body.pop()
    return body


def parse_expression_from(lines: list[str], start: int, first: str) -> ast.expr | None:
    """The expression that starts with `first` on line `start` and may run over the next lines."""
    text = first
    for end in range(start, min(start + 60, len(lines))):
        if end > start:
            text += "\n" + lines[end]
        try:
            return ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            continue
    return None


def read_workflow() -> Workflow:
    workflow = Workflow()
    for path in SOURCES:
        lines = path.read_text().splitlines()
        rule = None
        for number, line in enumerate(lines):
            if header := RULE.match(line):
                rule = header.group(2)
            elif header := USE_RULE.match(line):
                rule = header.group(3)
                workflow.parents[rule] = header.group(2)
            elif rule and (section := SECTION.match(line)):
                indent, kind, inline = section.groups()
                body = [inline] if inline.strip() else block(lines, number + 1, len(indent))
                call = ast.parse("f(\n" + textwrap.dedent("\n".join(body)) + "\n)", mode="eval").body
                workflow.sections.append(Section(path, number + 1 + (0 if inline.strip() else 1), rule, kind, call))
            elif constant := CONSTANT.match(line):
                expression = parse_expression_from(lines, number, constant.group(2))
                if expression is not None:
                    workflow.constants[constant.group(1)] = expression
            elif definition := DEF.match(line):
                source = textwrap.dedent("\n".join([line, *block(lines, number + 1, len(definition.group(1)))]))
                workflow.functions[definition.group(2)] = (path, number + 1, ast.parse(source))
    return workflow


WORKFLOW = read_workflow()


def shape(node: ast.AST, seen: tuple[str, ...] = ()) -> str | None:
    """The shape of a path expression (None: not a path): its text, each wildcard and unknown value as `*`, each
    path constant as its own shape and any other upper-case name as {NAME}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return WILDCARD.sub("*", node.value)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(WILDCARD.sub("*", value.value))
            elif isinstance(value.value, ast.Name):
                parts.append(name_shape(value.value.id, seen) or "*")
            else:
                parts.append("*")
        return "".join(parts)
    if isinstance(node, ast.Name):
        return name_shape(node.id, seen)
    return None


def name_shape(name: str, seen: tuple[str, ...]) -> str | None:
    if name in WORKFLOW.constants and name not in seen:
        if (resolved := shape(WORKFLOW.constants[name], (*seen, name))) is not None:
            return resolved
    return f"{{{name}}}" if name.isupper() else None


def unwrap(node: ast.expr) -> ast.expr:
    while (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in WRAPPERS
           and node.args):
        node = node.args[0]
    return node


def output_items(call: ast.Call) -> list[tuple[str | None, ast.expr]]:
    """(name, path expression) of an output section, a `**CONSTANT` dict spread into its items."""
    items = [(None, unwrap(arg)) for arg in call.args]
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg is None:
            if isinstance(value, ast.Name):
                value = WORKFLOW.constants.get(value.id, value)
            if isinstance(value, ast.Dict):
                items += [(key.value if isinstance(key, ast.Constant) else None, unwrap(item))
                          for key, item in zip(value.keys, value.values)]
        else:
            items.append((keyword.arg, unwrap(value)))
    return items


def outputs() -> dict[str, list[tuple[str | None, str]]]:
    """{rule: [(name, shape)]}, a `use rule` without an output section with its parent's."""
    found: dict[str, list[tuple[str | None, str]]] = {}
    for section in WORKFLOW.sections:
        if section.kind == "output":
            found.setdefault(section.rule, []).extend(
                (name, path_shape) for name, node in output_items(section.call)
                if (path_shape := shape(node)) is not None)
    for rule, parent in WORKFLOW.parents.items():
        if rule not in found:
            found[rule] = found.get(parent, [])
    return found


def pattern(output_shape: str) -> re.Pattern:
    """What an input's shape matches when it is that output: a `*` of the output is any value; a {NAME} of the output
    is that name or any value (an input may fill it from a variable). An output that is a constant alone
    (directory(DATA_ROOT)) is matched by that constant only."""
    if "/" not in output_shape:
        return re.compile(re.escape(output_shape))
    regex = ""
    for token in re.findall(r"\{[A-Z][A-Z0-9_]*\}|\*|[^*{]+|\{", output_shape):
        if token == "*":
            regex += r"[^/\s]+"
        elif token.startswith("{") and token.endswith("}"):
            regex += rf"(?:{re.escape(token)}|[^/\s]*\*[^/\s]*)"
        else:
            regex += re.escape(token)
    return re.compile(regex)


def spelled_paths(tree: ast.AST):
    """(node, shape) of every path expression in a tree, an f-string or a constant taken whole (docstrings and
    comments aside)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if (isinstance(node, (ast.JoinedStr, ast.Constant, ast.Name))
                and (node_shape := shape(node)) is not None):
            yield node, node_shape
            continue
        if isinstance(node, ast.JoinedStr):
            continue
        pending.extend(ast.iter_child_nodes(node))


def called_functions(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in WORKFLOW.functions}


def input_code():
    """(where, rule, tree) of every input section and of every function of these files that one reaches."""
    reached: dict[str, str] = {}  # function: the rule whose input first reaches it
    pending = []
    for section in WORKFLOW.sections:
        if section.kind == "input":
            yield f"{section.path.relative_to(REPO)}:{section.line}", section.rule, section.call
            pending += [(name, section.rule) for name in called_functions(section.call)]
    while pending:
        name, rule = pending.pop()
        if name in reached:
            continue
        reached[name] = rule
        path, line, tree = WORKFLOW.functions[name]
        yield f"{path.relative_to(REPO)}:{line} ({name}, an input function or helper)", rule, tree
        pending += [(called, rule) for called in called_functions(tree)]


def respelled_inputs() -> list[str]:
    produced = [(rule, name, output_shape, pattern(output_shape))
                for rule, items in outputs().items() for name, output_shape in items]
    problems = []
    for where, rule, tree in input_code():
        for node, input_shape in spelled_paths(tree):
            if producers := [f"rules.{producer}.output.{name or '<name it>'}"
                             for producer, name, _, regex in produced if regex.fullmatch(input_shape)]:
                problems.append(f"{where}, rule {rule}: {ast.unparse(node)} ({input_shape}) spells the path of "
                                f"{' or '.join(producers)}")
    return problems


def test_the_parse_finds_every_rule_and_its_outputs():
    """A guard on the check itself: a parse that missed sections would let every input through."""
    found = outputs()
    assert len(found) >= 25 and all(found.values()), found
    assert {"train_classifier", "gather_cams", "make_pseudo_labels", "results_table", "all"} <= {
        section.rule for section in WORKFLOW.sections}
    assert ("model", "results/{DATASET}/*/classifier/model.pt") in found["train_classifier"]
    assert ("model", "results/{DATASET}/*/classifier/model.pt") in found["train_classifier_accumulating"]
    assert pattern(dict(found["gather_cams"])["out"]).fullmatch(
        shape(ast.parse('f"{RESULTS}/{wildcards.experiment}/cams/cams.h5"', mode="eval").body))


def test_no_input_spells_a_path_that_a_rule_outputs():
    problems = respelled_inputs()
    assert not problems, "\n".join(problems)


def test_every_reference_to_a_rules_output_names_one_that_exists():
    names = {rule: {name for name, _ in items} for rule, items in outputs().items()}
    problems = [f"{path.relative_to(REPO)}: rules.{rule}.output.{name}"
                for path in SOURCES for rule, name in REFERENCE.findall(path.read_text())
                if name not in names.get(rule, set())]
    assert not problems, "no such rule or output: " + ", ".join(problems)


@pytest.mark.parametrize("respelled", [
    'f"{EXP}/classifier/model.pt"',
    'f"{RESULTS}/{wildcards.experiment}/cams/shard-{wildcards.shard}-of-{wildcards.num_shards}.h5"',
    "MANIFEST",
])
def test_the_check_finds_a_respelled_input(respelled):
    """The check on an input section that spells another rule's output again: it must see it."""
    call = ast.parse(f"f(model={respelled}, other=rules.gather_cams.output.out)", mode="eval").body
    produced = [pattern(output_shape) for items in outputs().values() for _, output_shape in items]
    shapes = [input_shape for _, input_shape in spelled_paths(call)]
    assert len(shapes) == 1 and any(regex.fullmatch(shapes[0]) for regex in produced), shapes
