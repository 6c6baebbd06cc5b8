"""Dependencies run one way (issue 20; ../shared/LAYOUT.md).

Every module of `gateway/` is read with `ast` (nothing is imported): an import of a module in a
later layer fails, and so does any gateway import from pure policy (`gateway/policy/`) other than
another policy module. Imports under `if TYPE_CHECKING:` count like any other: a type named
from a later layer is still a dependency on it.

One cut differs from LAYOUT.md's picture: `events` and `cetypes` (the CloudEvents codec) sit
after `policy`, with the other wire formats, not among the root modules. The codec refuses the
dead-letter attributes (`policy.deadletters.DL_ATTRIBUTES`) on publish and shares the String
rule with the dead letters (`policy.names`), so it depends on that policy, and nothing before
`policy` reads events.
"""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# Each layer may import from itself and from those before it.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "__init__ problems clock deadlines jsonsafe",
        "config",
        "policy",
        "events cetypes openapi api_models",
        "destinations",
        "store",
        "resources",
        "ops",
        "delivery",
        "ingress",
        "admin",
        "console",
        "app server",
        "cli __main__",
    )
)
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}

# (importing module, imported module): why it is still allowed. Keep it empty if you can.
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(GATEWAY.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str:
    """The layer part of a gateway module: `gateway.store.lmdb.keys` -> `store`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    path = GATEWAY.parent.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _imports(path: Path) -> set[str]:
    """The gateway modules `path` imports (`from gateway.a import b` names `gateway.a.b` too
    when `b` is a module)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    return {name for name in found if name == "gateway" or name.startswith("gateway.")}


def _modules() -> list[Path]:
    return sorted(GATEWAY.rglob("*.py"))


def _violations() -> list[str]:
    found = []
    for path in _modules():
        module = _module_name(path)
        rank = RANK[_part(module)]
        for imported in sorted(_imports(path)):
            if (module, imported) in ALLOWED:
                continue
            if _part(imported) not in RANK:
                found.append(f"{module} imports {imported} (in no layer)")
            elif RANK[_part(imported)] > rank:
                found.append(f"{module} imports {imported} (a later layer)")
            elif _part(module) == "policy" and _part(imported) != "policy":
                found.append(f"{module} (pure policy) imports {imported}")
    return found


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted(
        _module_name(path) for path in _modules() if _part(_module_name(path)) not in RANK
    )
    assert unknown == []


def test_imports_run_one_way() -> None:
    violations = _violations()
    assert not violations, "\n".join(violations)


def test_allowed_imports_are_still_needed() -> None:
    """An allowance outlives its reason unnoticed unless the import is still there."""
    present = {(_module_name(path), name) for path in _modules() for name in _imports(path)}
    assert sorted(set(ALLOWED) - present) == []
