"""Report the largest classes and functions in a source tree, by lines.

Why: issue 11 asks that no class grow past ~250 lines and no function past
~50; this prints the biggest of each so a change can show before and after.

Usage: python tools/code_sizes.py [ROOT=src/kos] [--top N=10]
"""

from __future__ import annotations

import argparse
import ast
import pathlib


def sizes(root: pathlib.Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Return (classes, functions) as lists of (lines, "path:line name")."""
    classes: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            end = node.end_lineno or node.lineno
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            entry = (end - first + 1, f"{path}:{node.lineno} {node.name}")
            (classes if isinstance(node, ast.ClassDef) else functions).append(entry)
    return sorted(classes, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="src/kos")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    classes, functions = sizes(pathlib.Path(args.root))
    for title, rows in (("classes", classes), ("functions", functions)):
        print(f"largest {title}:")
        for lines, where in rows[: args.top]:
            print(f"  {lines:5d}  {where}")


if __name__ == "__main__":
    main()
