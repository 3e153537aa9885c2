"""The import layers of docs/architecture.md, enforced: no import in serving/, monitoring/,
deploy/ or bench/ goes against them, top-level or inside a function, and no function-level
import closes a cycle that the module-level imports would otherwise have."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("serving", "monitoring", "deploy", "bench")

#: layer -> module prefixes (the longest matching prefix decides); see docs/architecture.md
LAYERS = {
    # + the stdlib-only leaves every side shares: reading /proc, the sidecar's command line
    "contract": ("monitoring.capture", "serving.common.procfs", "monitoring.capture.sidecar_command"),
    "runtime": ("serving",),
    "analysis": ("monitoring",),
    "launch": ("serving.launch.server", "serving.launch.client", "serving.launch.demo_client", "deploy"),
    "drivers": ("bench.loadtest", "bench.locustfile", "bench.demo", "bench.rehearse", "bench"),
}
#: layer -> the layers it may import
ALLOWED = {
    "contract": {"contract"},
    "runtime": {"contract", "runtime"},
    "analysis": {"contract", "analysis"},
    "launch": {"contract", "runtime", "launch"},
    "drivers": {"contract", "runtime", "analysis", "launch", "drivers"},
}
#: The analysis side reaches the runtime through this one adapter and nothing else.
ADAPTERS = {"monitoring.analysis.baseline.served_model": {"runtime"}}


def layer_of(module: str) -> str:
    best = ("", "")
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best[0]):
                best = (p, layer)
    return best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(first-party module imported, line, at module level?) for every import in ``path``."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body} | {id(c) for n in tree.body if isinstance(n, (ast.If, ast.Try))
                                         for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                out.append((name, node.lineno, id(node) in top))
    return out


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def test_every_module_has_a_layer():
    assert [m for m in all_modules() if not layer_of(m)] == []


def test_no_import_goes_against_the_layers():
    bad = []
    for mod, path in all_modules().items():
        src = layer_of(mod)
        for target, line, _ in imports(path):
            dst = layer_of(target)
            if dst not in ALLOWED[src] | ADAPTERS.get(mod, set()):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} ({src}) imports {target} ({dst})")
    assert bad == [], "imports against docs/architecture.md:\n" + "\n".join(bad)


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return False


def resolve(target: str, modules: dict[str, Path]) -> str:
    while target and target not in modules:  # `from pkg.mod import name` -> pkg.mod
        target = target.rpartition(".")[0]
    return target


def test_no_function_level_import_hides_a_cycle():
    modules = all_modules()
    top: dict[str, set[str]] = {m: set() for m in modules}
    late = []
    for mod, path in modules.items():
        for target, line, at_top in imports(path):
            t = resolve(target, modules)
            if t and t != mod:
                (top[mod].add(t) if at_top else late.append((mod, t, line)))
    hidden = [f"{modules[m].relative_to(ROOT)}:{line}: {m} imports {t} late, and {t} imports {m}"
              for m, t, line in late if reaches(top, t, m)]
    assert hidden == [], "\n".join(hidden)


def test_the_check_catches_a_wrong_way_import():
    assert layer_of("serving.runtime.models.base") == "runtime" and layer_of("monitoring.analysis.drift.mmd") == "analysis"
    assert "analysis" not in ALLOWED[layer_of("serving.runtime.capture_hook")]
    assert "runtime" not in ALLOWED[layer_of("monitoring.analysis.baseline.sources")]
