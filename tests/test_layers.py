"""Issue 17: the folders show the layers, and imports only point down them.

kernel (Black-76, event laws, payoffs) <- contract (layout, schemas, store, config, calendar)
<- sources | stages (siblings: neither imports the other) <- backtest <- views <- driver.
A module may import its own layer and the layers below; every import counts, the ones inside
functions too (they are the same dependency, paid later).
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
RANK = {"kernel": 0, "contract": 1, "sources": 2, "stages": 2, "backtest": 3, "views": 4, "driver": 5}


def _layer(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            if node.module == "pipeline":
                yield from (f"pipeline.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "pipeline")


def test_every_module_sits_in_a_layer_folder():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside the layer folders: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(RANK)


def test_imports_only_point_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        layer = _layer(module)
        if layer is None:            # pipeline/__init__.py: load() and data_root() for notebooks
            continue
        for target in _imports(path):
            other = _layer(target)
            if other is None or other == layer:
                continue
            if RANK[other] >= RANK[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
    assert wrong == [], "\n".join(wrong)
