#!/usr/bin/env python3
"""Syntax check of every Bicep file under a folder, with tree-sitter-bicep.

Usage: check_bicep.py [INFRA_DIR]   (default: infra/ beside this script's parent)

Fails (exit 1) when:
  * the parser's self-check fails: deliberately broken snippets must report errors and a
    valid one must report none, so this check cannot pass silently;
  * no *.bicep file is found;
  * any file has an ERROR or MISSING node (each printed as file:line:col);
  * a local module path does not resolve to a file, or a module is given a parameter its
    file does not declare, or is not given one it requires;
  * a parameters JSON file (*.parameters*.json / parameters*.json) is not valid JSON or names a
    parameter main.bicep does not declare.

There is no Bicep compiler here: this catches syntax and wiring mistakes, not type errors or
wrong resource properties.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def syntax_errors(source: bytes) -> list[tuple[int, int, str]]:
    """(line, column, message) of every ERROR and MISSING node, 1-based."""
    tree = PARSER.parse(source)
    lines = source.split(b"\n")
    found: list[tuple[int, int, str]] = []

    def column(row: int, byte_col: int) -> int:
        line = lines[row] if row < len(lines) else b""
        return len(line[:byte_col].decode("utf-8", errors="replace")) + 1

    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_missing:
            row, col = node.start_point
            found.append((row + 1, column(row, col), f"missing {node.type!r}"))
        elif node.type == "ERROR":
            row, col = node.start_point
            text = node.text.decode("utf-8", errors="replace").strip().splitlines()
            snippet = text[0][:40] if text else ""
            found.append((row + 1, column(row, col), f"syntax error near {snippet!r}"))
        if node.has_error and node.type != "ERROR":
            stack.extend(reversed(node.children))
    if tree.root_node.has_error and not found:
        found.append((1, 1, "syntax error (reported by the parser without an error node)"))
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# Self-check
# ---------------------------------------------------------------------------------------------

BROKEN_SNIPPETS = {
    "unterminated object": "resource r 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n",
    "missing value": "param a string =\nvar b = 1\n",
    "stray token": "var a = {\n  b: 1 2\n}\n",
    "unterminated string": "var a = 'abc\nvar b = 1\n",
}

VALID_SNIPPET = """targetScope = 'resourceGroup'
@description('x')
param a string = 'q'
type t = {
  @description('y')
  id: string
}
module m 'modules/x.bicep' = [for (v, i) in [1, 2]: if (v > 0) {
  name: 'm${i}'
  params: {
    a: a
  }
}]
var s = string(union({ k: 'v' }, empty(a) ? {} : { b: [ 1, 2 ] }))
resource r 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: 'x'
}
output o string = r.id
"""


def self_check() -> list[str]:
    problems = []
    for name, snippet in BROKEN_SNIPPETS.items():
        if not syntax_errors(snippet.encode()):
            problems.append(f"self-check: the broken snippet '{name}' parsed without an error")
    errors = syntax_errors(VALID_SNIPPET.encode())
    if errors:
        problems.append(f"self-check: the valid snippet reported {errors}")
    return problems


# ---------------------------------------------------------------------------------------------
# Module wiring
# ---------------------------------------------------------------------------------------------


def string_value(node) -> str | None:
    """The text of a plain string literal (no interpolation), else None."""
    if node is None or node.type != "string":
        return None
    parts = [c for c in node.named_children]
    if any(c.type != "string_content" for c in parts):
        return None
    return "".join(c.text.decode() for c in parts)


def key_name(prop) -> str | None:
    key = prop.named_children[0] if prop.named_children else None
    if key is None:
        return None
    if key.type == "identifier":
        return key.text.decode()
    return string_value(key)


def object_body(node):
    """The object a module declaration's value reduces to (through if/for)."""
    while node is not None and node.type != "object":
        if node.type in ("if_statement", "for_statement"):
            node = node.named_children[-1] if node.named_children else None
        else:
            return None
    return node


def declared_params(tree) -> dict[str, bool]:
    """name -> required (no default value and not nullable)."""
    params = {}
    for node in tree.root_node.named_children:
        if node.type != "parameter_declaration":
            continue
        named = node.named_children
        if not named or named[0].type != "identifier":
            continue
        name = named[0].text.decode()
        type_node = named[1] if len(named) > 1 else None
        has_default = len(named) > 2
        nullable = type_node is not None and any(c.type == "nullable_type" for c in type_node.named_children)
        params[name] = not has_default and not nullable
    return params


def check_modules(path: Path, tree) -> tuple[list[str], int]:
    problems, checked = [], 0
    for node in tree.root_node.named_children:
        if node.type != "module_declaration":
            continue
        named = node.named_children
        target = string_value(named[1]) if len(named) > 1 else None
        row = node.start_point[0] + 1
        if target is None:
            continue
        if target.startswith(("br:", "br/", "ts:", "ts/")):
            continue  # registry or template spec: not resolvable here
        checked += 1
        module_path = (path.parent / target).resolve()
        if not module_path.is_file():
            problems.append(f"{path}:{row}:1: module file {target!r} not found")
            continue
        module_tree = PARSER.parse(module_path.read_bytes())
        declared = declared_params(module_tree)
        body = object_body(named[2] if len(named) > 2 else None)
        given: set[str] = set()
        if body is not None:
            for prop in body.named_children:
                if prop.type == "object_property" and key_name(prop) == "params":
                    value = prop.named_children[-1]
                    if value.type == "object":
                        given = {key_name(p) for p in value.named_children if p.type == "object_property"}
                    else:
                        given = set(declared)  # params built by an expression: not checkable
        for name in sorted(n for n in given if n is not None and n not in declared):
            problems.append(f"{path}:{row}:1: module {target!r} has no parameter {name!r}")
        for name in sorted(n for n, required in declared.items() if required and n not in given):
            problems.append(f"{path}:{row}:1: module {target!r} requires parameter {name!r}")
    return problems, checked


def check_parameter_files(infra: Path) -> tuple[list[str], int]:
    problems, checked = [], 0
    main = infra / "main.bicep"
    if not main.is_file():
        return problems, 0
    declared = declared_params(PARSER.parse(main.read_bytes()))
    for path in sorted(infra.rglob("*.json")):
        if "parameters" not in path.name:
            continue
        checked += 1
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            problems.append(f"{path}:1:1: not valid JSON: {error}")
            continue
        parameters = document.get("parameters") if isinstance(document, dict) else None
        if not isinstance(parameters, dict):
            problems.append(f"{path}:1:1: no 'parameters' object")
            continue
        for name in sorted(set(parameters) - set(declared)):
            problems.append(f"{path}:1:1: main.bicep has no parameter {name!r}")
        for name in sorted(n for n, required in declared.items() if required and n not in parameters):
            problems.append(f"{path}:1:1: required parameter {name!r} of main.bicep is not set")
    return problems, checked


def main(argv: list[str]) -> int:
    infra = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "infra"

    problems = self_check()
    if problems:
        print("\n".join(problems))
        print("check-bicep: FAILED (the parser does not report errors as expected)")
        return 1
    print(f"check-bicep: self-check ok ({len(BROKEN_SNIPPETS)} broken snippets rejected, 1 valid snippet accepted)")

    files = sorted(infra.rglob("*.bicep")) if infra.is_dir() else []
    if not files:
        print(f"check-bicep: FAILED: no .bicep file under {infra}")
        return 1

    error_count, module_count = 0, 0
    for path in files:
        source = path.read_bytes()
        for line, col, message in syntax_errors(source):
            print(f"{path}:{line}:{col}: {message}")
            error_count += 1
        module_problems, checked = check_modules(path, PARSER.parse(source))
        problems.extend(module_problems)
        module_count += checked
    param_problems, param_files = check_parameter_files(infra)
    problems.extend(param_problems)
    for problem in problems:
        print(problem)

    print(
        f"check-bicep: parsed {len(files)} Bicep files: {error_count} syntax errors; "
        f"{module_count} module references and {param_files} parameter files checked: "
        f"{len(problems)} problems"
    )
    if error_count or problems:
        print("check-bicep: FAILED")
        return 1
    print("check-bicep: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
