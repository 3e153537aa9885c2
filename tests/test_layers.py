"""The import layers of docs/architecture.md, enforced by folder: every module's folder belongs to
one layer, no import in serving/, monitoring/, deploy/ or bench/ goes against the layers (top-level
or inside a function), the folders import each other without a cycle, and no function-level import
closes a cycle that the module-level imports would otherwise have."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("serving", "monitoring", "deploy", "bench")

#: folder -> layer; see docs/architecture.md. A folder written with a trailing "/" owns its files
#: and every folder under it; one without owns only the files directly in it (the package roots,
#: and monitoring/ingest, whose two sub-folders sit at different heights). Each owning folder is one
#: node of the folder graph that must have no cycle.
FOLDERS = {
    # contract: what every layer may import, and which imports nothing else of ours
    "serving": "contract",               # the model registry (RUNTIMES, MODEL_NAMES) and nothing else
    "serving/common/": "contract",       # stdlib-only leaves: reading /proc, the client retry policy
    "monitoring/capture/": "contract",   # the capture contract + the sidecar's command line
    # runtime: inside (and next to) the Triton model process
    "serving/runtime/": "runtime",
    # launch: start the server, talk to it, package and deploy it
    "deploy": "launch",                  # AWS, packaging, payloads (below serving/launch: the client uses it)
    "serving/launch/": "launch",
    "deploy/mme/": "launch",             # the MME front starts servers through serving/launch
    "deploy/docker/": "launch",
    # analysis: records in the store -> drift verdicts -> people
    "monitoring": "analysis",            # the `python -m monitoring` command line, jsonable
    "monitoring/ingest": "analysis",
    "monitoring/ingest/store/": "analysis",
    "monitoring/analysis/": "analysis",
    "monitoring/outputs/": "analysis",
    "monitoring/ingest/sidecar/": "analysis",  # runs the watch loop and the gauges: above analysis/
    # drivers: drive the platform from outside; nothing imports them
    "bench/": "drivers",
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


def owner(path: Path, root: Path = ROOT, folders: dict[str, str] = FOLDERS) -> str:
    """The FOLDERS key that owns the module at `path` ("" when none does)."""
    folder = path.parent.relative_to(root).as_posix()
    if folder in folders or folder + "/" in folders:
        return folder if folder in folders else folder + "/"
    parts = folder.split("/")
    for n in range(len(parts) - 1, 0, -1):
        if "/".join(parts[:n]) + "/" in folders:
            return "/".join(parts[:n]) + "/"
    return ""


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[tuple[str, int, bool]]:
    """(first-party name imported, line, at module level?) for every import in ``path``; for
    ``from pkg import name`` the name is ``pkg.name`` (:func:`resolve` trims it back to ``pkg``
    when ``name`` is not a module)."""
    mod = module_name(path, root)
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
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" for a in node.names if a.name != "*"] or [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] in packages:
                out.append((name, node.lineno, id(node) in top))
    return out


def all_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def resolve(target: str, modules: dict[str, Path]) -> str:
    while target and target not in modules:  # `from pkg.mod import name` -> pkg.mod
        target = target.rpartition(".")[0]
    return target


def folder_graph(root: Path = ROOT, folders: dict[str, str] = FOLDERS,
                 packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, list[str]]]:
    """owning folder -> owning folder it imports -> the imports that make the arrow (all of them,
    module-level and function-level: a lazy import is still an arrow a reader has to follow)."""
    modules = all_modules(root, packages)
    graph: dict[str, dict[str, list[str]]] = {}
    for mod, path in modules.items():
        src = owner(path, root, folders)
        for target, line, _ in imports(path, root, packages):
            t = resolve(target, modules)
            dst = owner(modules[t], root, folders) if t else ""
            if src and dst and dst != src:
                graph.setdefault(src, {}).setdefault(dst, []).append(f"{path.relative_to(root)}:{line} imports {t}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """One cycle of `graph` as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_every_module_has_a_folder_with_a_layer():
    assert [str(p.relative_to(ROOT)) for p in all_modules().values() if not owner(p)] == []
    assert [f for f in FOLDERS if not (ROOT / f).is_dir()] == []  # no stale rows
    assert set(FOLDERS.values()) == set(ALLOWED)


def test_no_import_goes_against_the_layers():
    modules = all_modules()
    bad = []
    for mod, path in modules.items():
        src = FOLDERS[owner(path)]
        for target, line, _ in imports(path):
            t = resolve(target, modules)
            if not t:
                continue
            dst = FOLDERS[owner(modules[t])]
            if dst not in ALLOWED[src] | ADAPTERS.get(mod, set()):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} ({src}) imports {t} ({dst})")
    assert bad == [], "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_the_folders_import_each_other_without_a_cycle():
    graph = folder_graph()
    cycle = find_cycle(graph)
    why = [f"{a} -> {b}: {graph[a][b][0]}" for a, b in zip(cycle, cycle[1:])]
    assert cycle == [], "folder cycle " + " -> ".join(cycle) + "\n" + "\n".join(why)


def test_the_cycle_check_fails_on_a_made_up_cycle(tmp_path):
    """Two folders of one layer importing each other -- one way lazily -- is a cycle."""
    for rel, text in {"pkg/__init__.py": "", "pkg/a/__init__.py": "", "pkg/b/__init__.py": "",
                      "pkg/a/x.py": "from pkg.b import y\n",
                      "pkg/b/y.py": "def f():\n    from pkg.a import x\n",
                      "pkg/c/z.py": "import pkg.a.x\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    folders = {"pkg": "l", "pkg/a/": "l", "pkg/b/": "l", "pkg/c/": "l"}
    graph = folder_graph(tmp_path, folders, ("pkg",))
    assert find_cycle(graph) == ["pkg/a/", "pkg/b/", "pkg/a/"]
    del graph["pkg/b/"]  # without the lazy import: c -> a -> b only
    assert find_cycle(graph) == []


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
    def layer(rel: str) -> str:
        return FOLDERS[owner(ROOT / rel)]

    assert layer("serving/runtime/models/base.py") == "runtime"
    assert layer("monitoring/analysis/drift/mmd.py") == "analysis"
    assert layer("serving/__init__.py") == "contract" and layer("bench/loadtest/cli.py") == "drivers"
    assert "analysis" not in ALLOWED[layer("serving/runtime/capture_hook.py")]
    assert "runtime" not in ALLOWED[layer("monitoring/analysis/baseline/sources.py")]
    assert owner(ROOT / "serving" / "newfolder" / "x.py") == ""  # a new folder must be given a layer
