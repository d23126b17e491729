"""Check the layout rules of the product code (`make lint` runs this, so CI does):

* no module under tollway/ longer than MAX_LINES lines;
* no import cycle between tollway's modules — counting every import, also the ones inside
  functions and under `if TYPE_CHECKING:`, since a cycle that only shows up lazily is still two
  modules that cannot be understood (or split) one without the other.

Standard library only, so it runs before anything is installed. Exit status 1 with one line per
violation; 0 and a one-line summary otherwise.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 600
# The repository to check: this one, or the one named on the command line.
ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
PACKAGE = "tollway"
# Modules being split on other branches (cli.py -> cli/, governance/dlp.py -> a package). Each
# entry must still be too long: once it is not, the check fails until it is removed from here.
PENDING_SPLITS: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, modules: set[str]) -> str | None:
    """The tollway module NAME refers to: itself, or the closest package above it that exists."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports pkg.mod when it is a module, else a name of pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = resolve(name, modules)
                if target is not None and target != here:
                    found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def main() -> int:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(f) for f in files}
    problems: list[str] = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        lines = len(f.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in PENDING_SPLITS:
            problems.append(f"{rel}: {lines} lines (at most {MAX_LINES})")
        elif lines <= MAX_LINES and rel in PENDING_SPLITS:
            problems.append(f"{rel}: {lines} lines now; remove it from PENDING_SPLITS in tools/check_layout.py")
    for pending in PENDING_SPLITS:
        if not (ROOT / pending).exists():
            problems.append(f"{pending}: gone; remove it from PENDING_SPLITS in tools/check_layout.py")
    graph = {module_name(f): imports_of(f, modules) for f in files}
    for component in cycles(graph):
        problems.append("import cycle: " + " <-> ".join(component))
    for problem in problems:
        print(problem)
    if not problems:
        print(f"layout ok: {len(files)} modules, none over {MAX_LINES} lines, no import cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
