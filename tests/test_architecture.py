"""The package's shape: no import cycles, no internal imports hidden in function bodies, no
flags defined by importing, a public API whose names are not submodules."""

import ast
import pathlib
import subprocess
import sys
import warnings

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxzoo"
# Optional dependencies may be imported inside functions (their users need them, others do
# not), and so may jaxzoo's own modules that import one of them at their top.
OPTIONAL = {"torch", "pyarrow", "datasets", "umap", "tensorflow", "tensorflow_datasets"}
NEEDS_OPTIONAL = {"jaxzoo.torch"}
# Modules run by `python -m`: top-level commands and the packages' __main__.
COMMANDS = {
    "jaxzoo.train",
    "jaxzoo.analyze",
    "jaxzoo.benchmark",
    "jaxzoo.sparsify",
    "jaxzoo.merge",
    "jaxzoo.upgrade",
    "jaxzoo.export.__main__",
    "jaxzoo.ingest.__main__",
    "jaxzoo.data.__main__",
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(node: ast.AST, importer: str) -> list[str]:
    """The modules an import statement names (`from a import b` names a.b when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolved against the importer's package
        base = importer.rsplit(".", node.level)[0] + (f".{node.module}" if node.module else "")
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def module_imports(tree: ast.Module) -> tuple[list[ast.AST], list[ast.AST]]:
    """(imports run when the module loads, imports inside function bodies)."""
    top, inner = [], []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (inner if in_function else top).append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, inner


def import_graph() -> dict[str, set[str]]:
    """module -> the modules its loading runs: what it imports, and the packages above them
    (importing a.b.c runs a/__init__ and a/b/__init__ first) unless the importer is inside."""
    graph = {}
    for name, path in MODULES.items():
        top, _ = module_imports(ast.parse(path.read_text()))
        targets = {target for node in top for target in imported(node, name) if target in MODULES}
        parents = {
            ".".join(target.split(".")[:k])
            for target in targets
            for k in range(2, target.count(".") + 1)
            if not name.startswith(".".join(target.split(".")[:k]) + ".")
        }
        graph[name] = (targets | parents) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_a_cycle_through_a_package_init_is_one():
    """cli imports data.tfds_source, which runs data/__init__; a data module importing cli closes it."""
    graph = import_graph()
    assert "jaxzoo.data" in graph["jaxzoo.cli"]  # the package above data.tfds_source
    assert "jaxzoo.data" not in graph["jaxzoo.data.custom"]  # inside the package: no edge to its init


def test_cycle_finder_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_internal_imports_inside_functions():
    hidden = []
    for name, path in MODULES.items():
        _, inner = module_imports(ast.parse(path.read_text()))
        for node in inner:
            for target in imported(node, name):
                root = target.split(".")[0]
                if root == "jaxzoo" and target not in NEEDS_OPTIONAL:
                    hidden.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target}")
    assert hidden == []


def test_inner_import_detection():
    source = "import os\ndef f():\n    from jaxzoo.zoo import checkpoint\n    return lambda: __import__('x')\n"
    top, inner = module_imports(ast.parse(source))
    assert [type(n).__name__ for n in top] == ["Import"]
    assert imported(inner[0], "jaxzoo.x") == ["jaxzoo.zoo.checkpoint"]


def test_library_modules_are_not_commands():
    """Only the commands parse argv; the library never imports a command."""
    graph = import_graph()
    for name in MODULES:
        source = MODULES[name].read_text()
        if name not in COMMANDS:
            assert "def main(" not in source, f"{name} holds a main(): move it to its command"
            assert not graph[name] & COMMANDS, f"{name} imports the commands {sorted(graph[name] & COMMANDS)}"


def test_importing_defines_no_flags():
    """Importing every module (commands included) registers no absl flag; running train does."""
    code = (
        "import importlib, pkgutil, warnings\n"
        "from absl import app, flags, logging\n"
        "before = set(flags.FLAGS)\n"
        "import jaxzoo\n"
        "for info in pkgutil.walk_packages(jaxzoo.__path__, 'jaxzoo.'):\n"
        "    if not info.name.endswith('__main__') and info.name != 'jaxzoo.torch':\n"
        "        importlib.import_module(info.name)\n"
        "ours = lambda: sorted(n for n in set(flags.FLAGS) - before\n"
        "                      if 'jaxzoo' in (flags.FLAGS.find_module_defining_flag(n) or ''))\n"
        "print(ours())\n"
        "from jaxzoo import train\n"
        "train.define_flags()\n"
        "print(ours())\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    assert lines[0] == "[]"
    assert "workdir" in lines[1] and "config" in lines[1]


def test_public_api_names_are_not_submodules():
    import jaxzoo
    import jaxzoo.analyze  # noqa: F401  (a submodule import must not change the API)
    import jaxzoo.export  # noqa: F401

    submodules = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    assert not set(jaxzoo.__all__) & submodules
    for name in jaxzoo.__all__:
        assert getattr(jaxzoo, name) is not None
    assert callable(jaxzoo.export_zoo) and callable(jaxzoo.analyze_zoo) and callable(jaxzoo.read_zoo)
    assert jaxzoo.export.load_vectors is jaxzoo.weights.vectors.load_vectors


@pytest.mark.parametrize(
    "old, new",
    [
        ("jaxzoo.symmetry", "jaxzoo.weights.symmetry"),
        ("jaxzoo.loaders", "jaxzoo.weights.loaders"),
        ("jaxzoo.paper_zoos", "jaxzoo.config.paper_zoos"),
    ],
)
def test_moved_modules_keep_their_old_path_for_a_release(old, new):
    import importlib

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
