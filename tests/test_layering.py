"""The dependency rule of docs/architecture.md §3: imports point down the layer list, never up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "latentspace"

#: docs/architecture.md §3, bottom (0) to top; a module may import its own layer or lower ones
LAYERS = {
    "core": 0,
    "analysis": 1,
    "embed": 2, "latent": 2,
    "storage": 3,
    "collections": 4,
    "apps": 5, "ingest": 5, "ray_ingest": 5, "data": 5,
    "cli": 6, "server": 6,
}


def layer_of(module: str) -> tuple[str, int] | None:
    """The layer of a dotted module inside latentspace (None for the package root, which curates the API)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "latentspace":
        return None
    top = parts[1]
    if top not in LAYERS:
        return None if top in ("__init__", "_version", "__main__") else (top, -1)
    return top, LAYERS[top]


def imports_of(path: Path) -> list[tuple[str, int]]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions count too
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno))
    return out


def test_every_module_belongs_to_a_layer_and_imports_only_downwards():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        here = layer_of(".".join(rel.parts))
        if here is None:
            continue
        assert here[1] >= 0, f"{path}: latentspace.{here[0]} is in no layer of docs/architecture.md §3"
        for target, line in imports_of(path):
            there = layer_of(target)
            if there is not None and there[1] > here[1]:
                wrong.append(f"{rel}:{line} ({here[0]}) imports {target} ({there[0]}, a higher layer)")
    assert not wrong, "\n".join(wrong)
