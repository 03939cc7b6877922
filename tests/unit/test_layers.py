"""The import layering of the `nmdose` package (docs/architecture.md, "Layers"), and the loud registration of the
plugin's stages and the command line's sub-commands.

The graph is read from the source with `ast` (nothing is imported to build it). An edge is every `import` and
`from … import …` a module executes, at module level *and inside functions*: a lazy import runs too, and a
cycle hidden in a function works only as long as nobody calls it at import time, so it counts. Only imports
under `if TYPE_CHECKING:` are left out (never executed). `from pkg import name` is an edge to the submodule
`pkg.name` when there is one, else to `pkg`; importing `a.b.c` also imports the packages `a` and `a.b` (their
`__init__` runs first), except the importer's own packages, which are already loading.

Rules:
1. nothing in the package imports the Orthanc glue: the `orthanc` module, `orthanc_plugin/entry.py`,
   `orthanc_plugin/dose_standin_entry.py`;
2. every module belongs to one layer of `LAYERS` and imports only from its own layer or the layers below;
3. `dose/` never imports `web/` or `pacs/` (the dose worker gets the dose page's warm-up as a callback);
4. no import cycle.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

import nmdose

PACKAGE_DIR = Path(nmdose.__file__).resolve().parent
ORTHANC_GLUE = frozenset({"orthanc", "entry", "dose_standin_entry"})

# Lowest first. A module may import its own layer and the ones below, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "leaf",  # no I/O of their own: errors, configuration, secrets, DICOM reading, TLS, HTTP routing
        (
            "nmdose",
            "nmdose.errors",
            "nmdose.envfile",
            "nmdose.config",
            "nmdose.secrets",
            "nmdose.logfiles",
            "nmdose.orthanc_log",
            "nmdose.progress",
            "nmdose.ports",
            "nmdose.orthanc_ids",
            "nmdose.sop_classes",
            "nmdose.agent_names",
            "nmdose.dicom_file",
            "nmdose.dicom_sr",
            "nmdose.security",
            "nmdose.security.*",
            "nmdose.audit.context",
            "nmdose.web",
            "nmdose.web.router",
            "nmdose.web.params",
            "nmdose.web.openapi",
            "nmdose.web.export",
            "nmdose.web.xlsx",
            "nmdose.web.dicomweb",
        ),
    ),
    (
        "services",  # PostgreSQL, the PACS tools and REST clients, the queue's workers, auth, the audit trail
        (
            "nmdose.db",
            "nmdose.db.*",
            "nmdose.pacs",
            "nmdose.pacs.*",
            "nmdose.workers",
            "nmdose.breaker",
            "nmdose.auth",
            "nmdose.web.cache",
            "nmdose.web.gate",
            "nmdose.audit",
            "nmdose.audit.event",
            "nmdose.audit.store",
            "nmdose.audit.writer",
            "nmdose.audit.actions",
            "nmdose.audit.atna",
            "nmdose.audit.dicomweb",
        ),
    ),
    (
        "stages",  # the pipeline: census → retrieve → forward, dose, simulation, echo; the audit trail's routes
        (
            "nmdose.census",
            "nmdose.census.*",
            "nmdose.retrieve",
            "nmdose.retrieve.*",
            "nmdose.forward",
            "nmdose.forward.*",
            "nmdose.dose",
            "nmdose.dose.*",
            "nmdose.alerts",
            "nmdose.alerts.*",
            "nmdose.simulate",
            "nmdose.simulate.*",
            "nmdose.echo",
            "nmdose.audit.routes",
            "nmdose.audit.cli",
            "nmdose.importer",
            "nmdose.importer.*",
            "nmdose.pseudonymise",
            "nmdose.pseudonymise.*",
            "nmdose.projects",
            "nmdose.projects.*",
        ),
    ),
    (
        "web",  # the pages and their API, reading across the stages
        (
            "nmdose.web.pages",
            "nmdose.web.sql_common",
            "nmdose.web.sql_research",
            "nmdose.web.sql_levels",
            "nmdose.web.sql_outliers",
            "nmdose.web.routes_outliers",
            "nmdose.web.sql_dose",
            "nmdose.web.sql_names",
            "nmdose.web.routes_names",
            "nmdose.web.sql_patients",
            "nmdose.web.sql_reports",
            "nmdose.web.routes_reports",
            "nmdose.web.sql_scanners",
            "nmdose.web.routes_scanners",
            "nmdose.web.shell",
            "nmdose.web.routes",
            "nmdose.web.routes_research",
            "nmdose.web.routes_dose",
            "nmdose.web.routes_patients",
            "nmdose.web.routes_alerts",
            "nmdose.web.routes_projects",
            "nmdose.web.routes_pseudo",
            "nmdose.web.routes_pages",
            "nmdose.web.dose_views",
            "nmdose.web.report_views",
            "nmdose.web.proxy",
            "nmdose.web.explorer2",
            "nmdose.web.names",
            "nmdose.web.viewer_dist",
            "nmdose.web.routes_viewer",
        ),
    ),
    (
        "glue",  # what assembles the stages: the plugin, the command line, the local stack
        (
            "nmdose.plugin",
            "nmdose.cli",
            "nmdose.config_cmd",
            "nmdose.stack",
        ),
    ),
)


def _module_name(path: Path, package_dir: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (module level and in functions), not those under TYPE_CHECKING."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def build_graph(package_dir: Path = PACKAGE_DIR) -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """(modules, edges inside the package, imports of names outside it: top-level name only)."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        name, is_package = _module_name(path, package_dir)
        files[name] = (path, is_package)
    modules = set(files)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    external: dict[str, set[str]] = {m: set() for m in modules}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for module, (path, is_package) in files.items():
        package = module if is_package else module.rpartition(".")[0]
        targets: list[str] = []
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.extend(alias.name for alias in node.names)
                continue
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets.extend(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        for target in targets:
            if target.split(".")[0] != "nmdose":
                external[module].add(target.split(".")[0])
                continue
            resolved = resolve(target)
            if resolved is None:
                continue
            parts = resolved.split(".")
            for i in range(1, len(parts) + 1):  # the packages above run their __init__ first
                dependency = ".".join(parts[:i])
                inside = module == dependency or module.startswith(dependency + ".")
                if not inside:
                    edges[module].add(dependency)
    return modules, edges, external


@cache
def graph() -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    return build_graph()


def layer_of(module: str) -> int | None:
    found = [
        i for i, (_, patterns) in enumerate(LAYERS) if any(fnmatch.fnmatchcase(module, p) for p in patterns)
    ]
    if len(found) != 1:
        return None
    return found[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    return "; ".join(f"{a} -> {b}" for a in component for b in sorted(edges[a] & inside))


# ----- the rules


def test_the_graph_is_read_from_the_package():
    modules, edges, _ = graph()
    assert {"nmdose.plugin", "nmdose.cli", "nmdose.dose.spool", "nmdose.web.pages"} <= modules
    assert "nmdose.db" in edges["nmdose.workers"]  # a module-level import
    assert "nmdose.db" in edges["nmdose.dose.spool"]  # an import inside a function counts too
    assert "nmdose.config" not in edges["nmdose.secrets"]  # under TYPE_CHECKING only: never runs


def test_nothing_in_the_package_imports_the_orthanc_glue():
    _, _, external = graph()
    bad = {m: sorted(names & ORTHANC_GLUE) for m, names in external.items() if names & ORTHANC_GLUE}
    assert not bad, (
        f"the Orthanc glue is imported by {bad} (keep `orthanc` in entry.py/dose_standin_entry.py)"
    )


def test_every_module_has_one_layer():
    modules, _, _ = graph()
    unplaced = sorted(m for m in modules if layer_of(m) is None)
    assert not unplaced, f"not in exactly one layer of LAYERS (tests/unit/test_layers.py): {unplaced}"


def test_imports_go_down_the_layers_only():
    modules, edges, _ = graph()
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
        for a in sorted(modules)
        for b in sorted(edges[a])
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_dose_stage_never_imports_web_or_pacs():
    modules, edges, _ = graph()
    bad = [
        f"{a} -> {b}"
        for a in sorted(modules)
        if a == "nmdose.dose" or a.startswith("nmdose.dose.")
        for b in sorted(edges[a])
        if b.startswith(("nmdose.web", "nmdose.pacs"))
    ]
    assert not bad, f"dose/ imports web/ or pacs/: {bad}"


def test_no_import_cycle():
    _, edges, _ = graph()
    found = cycles(edges)
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(
        _describe(c, edges) for c in found
    )


def test_a_cycle_is_found(tmp_path):
    """The checker itself: a lazy import that closes a loop is a cycle; the same import under TYPE_CHECKING is not."""
    pkg = tmp_path / "nmdose"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from nmdose import b\n")
    (pkg / "b.py").write_text("def f():\n    from nmdose.a import x\n")
    _, edges, _ = build_graph(pkg)
    assert cycles(edges) == [["nmdose.a", "nmdose.b"]]
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nmdose.a import x\n"
    )
    _, edges, _ = build_graph(pkg)
    assert cycles(edges) == []


# ----- stages and sub-commands are registered by import, not by name


def test_the_plugin_and_the_command_line_list_modules_not_names():
    for name in ("plugin.py", "cli.py"):
        tree = ast.parse((PACKAGE_DIR / name).read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "importlib" not in imported, f"{name}: stages are imported explicitly, never looked up by name"


def test_every_plugin_stage_contributes_a_hook():
    from nmdose import plugin

    assert [m.__name__ for m in plugin.STAGES] == [
        "nmdose.census.routes",
        "nmdose.retrieve.routes",
        "nmdose.forward.routes",
        "nmdose.pseudonymise.routes",
        "nmdose.web.pages",
        "nmdose.audit.routes",
    ]
    plugin.check_stages(plugin.STAGES)


def test_a_stage_without_hooks_fails_the_plugin_at_start():
    import types

    from nmdose import plugin

    typo = types.ModuleType("nmdose.forward.typo")
    typo.register_route = lambda router, p: None  # misspelt: would be silently ignored
    with pytest.raises(RuntimeError, match=r"nmdose\.forward\.typo defines none of"):
        plugin.check_stages([*plugin.STAGES, typo])
    with pytest.raises(RuntimeError, match="defines none of"):
        plugin.Plugin(None, stages=[typo])  # before anything else is built


def test_the_command_line_has_every_sub_command_and_hands_the_warm_up_to_the_dose_worker():
    from nmdose import cli
    from nmdose.web.dose_views import warm_default_views

    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse has no public accessor
    assert list(commands) == [
        "config", "db", "stack", "echo", "health", "certs", "security", "proxy", "simulate", "census",
        "retrieve", "forward", "dose", "names", "alerts", "audit", "import", "project",
        "pseudonymise",
    ]  # fmt: skip
    args = parser.parse_args(["dose", "worker", "--once"])
    assert args.warm_views is warm_default_views
