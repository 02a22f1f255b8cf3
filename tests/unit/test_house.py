"""The shape of the product code: no import cycles, small modules, no citation outside the repo.

These hold the layout a newcomer relies on (docs/architecture.md): packages by
role whose imports point one way. Every import counts, also one inside a
function or under ``TYPE_CHECKING``: a cycle hidden in a function is still two
modules that cannot be understood one without the other.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("agentstream", "schemas", "streams", "processors", "projections", "infra")
MAX_MODULE_LINES = 450


def product_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the product packages."""
    modules: dict[str, Path] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    """The product modules that ``name`` (at ``path``) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from pkg import module`` imports the module; ``from m import name`` m.
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    yield sub
                elif target in modules:
                    yield target


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {
        name: {m for m in imported_modules(path, name, modules) if m != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
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
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from .a import f\n")
    modules = {"pkg": package / "__init__.py", "pkg.a": package / "a.py", "pkg.b": package / "b.py"}
    assert set(imported_modules(package / "a.py", "pkg.a", modules)) == {"pkg.b"}
    assert set(imported_modules(package / "b.py", "pkg.b", modules)) == {"pkg.a"}


def test_no_import_cycle_in_the_product_code() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_dependencies_point_one_way_between_top_level_packages() -> None:
    """schemas <- streams <- processors / projections <- agentstream; infra stands alone."""
    allowed = {
        "schemas": set(),
        "streams": {"schemas"},
        "processors": {"schemas", "streams"},
        "projections": {"schemas", "streams"},
        "infra": set(),
        "agentstream": set(PRODUCT),
    }
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if (top := module.split(".")[0]) != (other := target.split(".")[0])
        and other not in allowed[top]
        and target != "agentstream.errors"  # the root of the error tree imports nothing
    )
    assert not wrong, "imports that run back up: " + ", ".join(wrong)


def test_the_error_root_imports_nothing_so_every_layer_may_import_it() -> None:
    assert import_graph()["agentstream.errors"] == set()


def test_every_error_of_ours_has_the_one_root() -> None:
    """Callers catch ``AgentstreamError`` for anything agentstream refused on purpose."""
    import importlib
    import inspect

    from agentstream.errors import AgentstreamError

    strays = []
    for name in product_modules():
        if name.startswith("projections.migrations") or name.endswith("__main__"):
            continue  # Alembic's env.py migrates, a __main__ runs the CLI, when imported
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == name
                and issubclass(cls, BaseException)
                and not issubclass(cls, AgentstreamError)
            ):
                strays.append(f"{name}.{cls.__name__}")
    assert not strays, "errors outside the AgentstreamError tree: " + ", ".join(strays)


def test_only_streams_builds_kafka_clients() -> None:
    """Every client starts from one KafkaSettings (streams.clients), so none misses a setting.

    ``infra`` is exempt: it brings a local broker up and imports nothing of ours.
    """
    kinds = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
    built = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for name, path in product_modules().items()
        if name.split(".")[0] not in ("streams", "infra")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in kinds
    )
    assert not built, "Kafka clients built outside streams: " + ", ".join(built)


def test_no_product_module_is_too_long_to_hold_in_mind() -> None:
    long = sorted(
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in product_modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    )
    assert not long, f"modules over {MAX_MODULE_LINES} lines: " + ", ".join(long)


def test_the_repository_explains_itself() -> None:
    """No file cites a design page outside the repo; the docs it cites exist."""
    outside = re.compile(r"\.\./shared|ARCHITECTURE\.md|STYLE\.md")
    files = [ROOT / "README.md", *(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py"))]
    files += sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "benchmarks").glob("*.py"))
    citing = sorted(
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line)
    )
    assert not citing, "cites a page outside the repository: " + ", ".join(citing)
    for doc in ("architecture.md", "operations.md", "benchmarks.md"):
        assert (ROOT / "docs" / doc).is_file(), f"docs/{doc} is missing"
