"""Dependencies point one way: worker -> contract <- producers; config imports neither side.

The graph is read from the source (every import, including those inside functions), so a lazy
import cannot hide a dependency. docs/architecture.md explains the rules.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("producers", "worker", "config", "localaws")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every absolute module name that ``path`` imports, resolved for relative imports."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            graph[_module_name(path)] = _imports(path)
    return graph


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(graph: dict[str, set[str]], source: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _within(module, source)
        for target in targets
        if any(_within(target, f) for f in forbidden)
    )


def test_producers_never_import_the_worker() -> None:
    """The CLI and the client reach Redis and the queue through the contract alone."""
    assert _violations(_graph(), "producers", ("worker", "localaws.devstack")) == []


def test_the_checker_sees_a_producer_importing_the_workers_release_store() -> None:
    """The client reaching for the worker's release store (to advance a release in-process)
    is a violation like any other import of the worker (the test above can fail)."""
    graph = {"producers.client": {"worker.release_store.WorkerReleaseStore"}}
    assert _violations(graph, "producers", ("worker",)) == [
        "producers.client imports worker.release_store.WorkerReleaseStore"
    ]


# What moves a release on: only workers do it (worker/release_store.py).
_ADVANCING = frozenset({"advance", "record_gate_measurement"})


def _advancing(path: Path) -> list[str]:
    """Where ``path`` defines or calls a method that moves a release on."""
    where = _module_name(path) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in _ADVANCING:
            found.append(f"{where}:{node.lineno} defines {node.name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _ADVANCING
        ):
            found.append(f"{where}:{node.lineno} calls {node.func.attr}")
    return found


def test_producers_never_advance_a_release() -> None:
    """The contract's release store creates, reads, cancels and answers; a producer that
    changed a release sends an AdvanceMessage and a worker moves it on."""
    found = [hit for path in sorted((ROOT / "producers").rglob("*.py")) for hit in _advancing(path)]
    assert found == []


def test_the_advance_finder_sees_a_call_and_a_definition(tmp_path: Path) -> None:
    """A call of ``advance`` and a method named so are both found (the test above can fail)."""
    module = tmp_path / "m.py"
    module.write_text(
        "class S:\n    def advance(self):\n        pass\n\n"
        "def f(store):\n    return store.advance('rel', None, None)\n"
    )
    assert [hit.split(" ", 1)[1] for hit in _advancing(module)] == [
        "defines advance",
        "calls advance",
    ]


def test_the_contract_imports_neither_side() -> None:
    """The contract is what both sides share: it imports only itself and libraries."""
    graph = _graph()
    forbidden = ("worker", "config", "localaws", "producers.client", "producers.cli")
    assert _violations(graph, "producers.contract", forbidden) == []


def test_config_imports_no_side() -> None:
    """Settings and Celery configuration are read by both sides, so they import neither."""
    assert _violations(_graph(), "config", ("worker", "producers", "localaws")) == []


def test_the_worker_imports_no_producer_front_end_and_no_local_aws() -> None:
    """Workers depend on the contract and config, never on the CLI, client or local AWS."""
    forbidden = ("producers.cli", "producers.client", "localaws")
    assert _violations(_graph(), "worker", forbidden) == []


def _package_of(module: str, graph: dict[str, set[str]]) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to itself).

    The local AWS is one development tool, not a layer of Conveyor: all of it is one node.
    """
    if _within(module, "localaws"):
        return "localaws"
    is_package = any(other.startswith(module + ".") for other in graph)
    return module if is_package else module.rpartition(".")[0] or module


def _resolve(name: str, graph: dict[str, set[str]]) -> str | None:
    """The module an imported name refers to (``pkg.mod.Class`` -> ``pkg.mod``)."""
    while name and name not in graph:
        name = name.rpartition(".")[0]
    return name or None


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        source = _package_of(module, graph)
        for name in targets:
            target_module = _resolve(name, graph)
            if target_module is None:
                continue
            target = _package_of(target_module, graph)
            if target != source:
                edges[source].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[str]:
    cycles = []
    for start in sorted(edges):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return cycles


def _imports_of_tests(path: Path) -> list[str]:
    """The modules of ``tests`` that ``path`` imports (absolute imports, lazy ones included)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] == "tests"]


def test_nothing_shipped_imports_the_tests() -> None:
    """The fake gateway and the other test doubles stay out of the wheel, so no module of a
    package the wheel holds may import them."""
    found = [
        f"{_module_name(path)} imports {name}"
        for top in ("producers", "worker", "config")
        for path in sorted((ROOT / top).rglob("*.py"))
        for name in _imports_of_tests(path)
    ]
    assert found == []


def test_the_tests_import_finder_sees_a_lazy_import(tmp_path: Path) -> None:
    """An import of the fake inside a function is found (the test above can fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tests.fakes.ecs import FakeAws\n    return FakeAws\n")
    assert _imports_of_tests(module) == ["tests.fakes.ecs"]


def test_no_import_cycle_between_packages() -> None:
    """No package depends, directly or indirectly, on a package that depends on it."""
    assert _cycles(_package_edges(_graph())) == []


def test_the_cycle_finder_finds_an_indirect_cycle() -> None:
    """A -> B -> C -> A is reported (the test above can fail)."""
    graph = {"a.m": {"b.m"}, "b.m": {"c.m"}, "c.m": {"a.m.X"}}
    assert "a -> b -> c -> a" in _cycles(_package_edges(graph))


@pytest.mark.parametrize("module", ["producers.client", "producers.cli"])
def test_loading_a_producer_loads_no_worker_module(module: str) -> None:
    """At run time too: importing the client (and its Celery config) loads nothing of worker/.

    Celery resolves the broker transport from a string, which an import graph cannot see.
    """
    code = (
        f"import sys, {module}\n"
        "from config.celery import celery_config\n"
        "from config.settings import Settings\n"
        "from celery import Celery\n"
        "app = Celery('p'); app.config_from_object(celery_config(Settings()))\n"
        "app.connection_for_write().transport\n"
        "print(sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The walk finds a lazy import inside a function (the test can fail)."""
    graph = {"producers.x": {"worker.steps"}, "worker.steps": set()}
    assert _violations(graph, "producers", ("worker",)) == ["producers.x imports worker.steps"]


def test_the_producer_path_loads_no_celery() -> None:
    """`conveyor update --no-wait` from a shell loop pays for every import: the CLI and client
    send their messages straight to Redis and never load Celery."""
    code = (
        "import sys, producers.client, producers.cli\n"
        "tops = ('celery', 'kombu', 'worker')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in tops))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_the_producers_name_priority_lists_as_kombu_does() -> None:
    """Producers put first steps on kombu's priority lists without Celery: the names must be
    the ones the workers' Redis transport reads (its defaults, which config does not change)."""
    from kombu.transport.redis import PRIORITY_STEPS as KOMBU_STEPS
    from kombu.transport.redis import Channel

    from producers.contract.names import PRIORITY_SEP, PRIORITY_STEPS, priority_list

    assert list(PRIORITY_STEPS) == list(KOMBU_STEPS)
    assert Channel.sep == PRIORITY_SEP
    channel = Channel.__new__(Channel)  # only the naming methods, no connection
    for priority in range(10):
        # kombu's private naming method, which its type stubs leave out.
        expected = channel._q_for_pri("conveyor", priority)  # type: ignore[attr-defined]
        assert priority_list("conveyor", priority) == expected


DOC = ROOT / "docs" / "architecture.md"
# A Conveyor path in backquotes: `producers/contract/`, `worker/aws/gateway.py`.
_PATH = re.compile(r"`((?:" + "|".join(PACKAGES) + r")(?:/[a-z_]+)*(?:/|\.py))`")


def _as_module(path: str) -> str:
    return path.removesuffix("/").removesuffix(".py").replace("/", ".")


def _table(text: str) -> dict[str, tuple[str, ...]]:
    """The rows of the table "what each package may import": package -> modules it may import."""
    rows: dict[str, tuple[str, ...]] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("| package | holds | may import |"):
            break
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        own = _PATH.match(cells[0])
        if own is None:  # the separator row, or a row that is not a Python package
            continue
        rows[_as_module(own.group(1))] = tuple(_as_module(p) for p in _PATH.findall(cells[-1]))
    return rows


def _row_of(module: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """The most specific row of the table that holds ``module``."""
    holding = [row for row in table if _within(module, row)]
    return max(holding, key=len, default=None)


def _not_allowed(graph: dict[str, set[str]], table: dict[str, tuple[str, ...]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        row = _row_of(module, table)
        if row is None:
            found.append(f"{module} is in no row of the table")
            continue
        allowed = (row, *table[row])
        found.extend(
            f"{module} imports {target} ({row} may import: {', '.join(table[row]) or 'nothing'})"
            for target in sorted(targets)
            if not any(_within(target, a) for a in allowed)
        )
    return found


def test_every_import_is_one_the_table_in_the_docs_allows() -> None:
    """docs/architecture.md says what each package may import; the code does no more."""
    table = _table(DOC.read_text())
    assert {"producers.contract", "producers", "config", "worker.services", "worker.aws"} <= set(
        table
    )
    assert _not_allowed(_graph(), table) == []


def test_the_table_check_finds_an_import_the_table_does_not_allow() -> None:
    """A domain module importing the gateway is reported (the test above can fail)."""
    table = _table(DOC.read_text())
    graph = {"worker.domain.x": {"worker.aws.gateway.EcsGateway", "producers.contract.jobs"}}
    (problem,) = _not_allowed(graph, table)
    assert problem.startswith("worker.domain.x imports worker.aws.gateway.EcsGateway")
