"""The layout's rules (docs/architecture.md), read from the source's own import statements:

- nothing under ``despite_core`` imports ``despite_ros``, rclpy or any other ROS Python package;
- the online library ``despite_core.runtime`` imports no torch (statically here; test_train also
  imports it with torch made unimportable);
- no two modules import each other, directly or round a longer circle.

Every import counts, also those inside functions: a lazy import still ties the two halves.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("despite_core", "despite_ros")
# ROS Python packages an offline module must not touch (rclpy and the message/launch packages).
ROS_PACKAGES = {"despite_ros", "rclpy", "rcl_interfaces", "rosidl_runtime_py", "sensor_msgs", "std_msgs",
                "geometry_msgs", "builtin_interfaces", "diagnostic_msgs", "visualization_msgs", "launch",
                "launch_ros", "launch_testing", "ament_index_python"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "msg" not in p.relative_to(ROOT).parts[1:2]}


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative ones resolved. ``from a import b``
    names ``a.b`` (b may be a module); callers resolve it against the known modules."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out += [(f"{base}.{a.name}" if a.name != "*" else base, node.lineno) for a in node.names]
    return out


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The project module an import names: the longest known prefix (``a.b.func`` -> ``a.b``)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in known:
            return cand
    return None


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in known}
    for m, p in known.items():
        for target, _ in imports_of(m, p):
            dst = resolve(target, known)
            # a module's own package (its __init__) is not an edge: importing a.b.c runs a/b/__init__ by
            # Python's rules, whoever asks; what matters is what the code names.
            if dst is not None and dst != m and not m.startswith(dst + "."):
                graph[m].add(dst)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


KNOWN = project_modules()


def test_the_walk_sees_the_tree():
    # the rules below are only as good as the module list: the runtime and the nodes must be in it
    assert {"despite_core.runtime.inference", "despite_core.runtime.perception", "despite_ros.nodes.har_node",
            "despite_ros.bag_eval.offline", "despite_core.data.synth.world"} <= set(KNOWN)


def test_offline_half_never_imports_ros():
    bad = [f"{KNOWN[m].relative_to(ROOT)}:{line} imports {target}"
           for m in KNOWN if m.startswith("despite_core")
           for target, line in imports_of(m, KNOWN[m]) if target.split(".")[0] in ROS_PACKAGES]
    assert not bad, "despite_core must not import the ROS half (docs/architecture.md):\n" + "\n".join(bad)


def test_runtime_library_never_imports_torch():
    bad = [f"{KNOWN[m].relative_to(ROOT)}:{line} imports {target}"
           for m in KNOWN if m.startswith("despite_core.runtime")
           for target, line in imports_of(m, KNOWN[m])
           if target.split(".")[0] == "torch" or resolve(target, KNOWN) in
           {k for k in KNOWN if k.startswith(("despite_core.models", "despite_core.train", "despite_core.ops",
                                              "despite_core.losses", "despite_core.export"))}]
    assert not bad, "the online library must stay torch-free:\n" + "\n".join(bad)


def test_no_import_circles():
    found = circles(import_graph(KNOWN))
    assert not found, "modules that import each other (directly or round a circle): " + "; ".join(
        " <-> ".join(c) for c in found)


@pytest.mark.parametrize("edges,expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
])
def test_circle_finder(edges, expected):
    assert circles(edges) == expected
