"""The layering is a contract (pyproject.toml, [tool.importlinter]); these tests prove it is
checked, that it covers every module, and that the library stays silent."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="import-linter (dev extra) is not installed")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqgen"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT = Path(sys.executable).with_name("lint-imports")


def contract(contract_id: str) -> dict:
    return next(c for c in CONFIG["contracts"] if c["id"] == contract_id)


def top_level_modules() -> set[str]:
    names = {f"seqgen.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {f"seqgen.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    return names


def test_the_contracts_pass():
    result = subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_module_is_in_a_layer_and_in_the_silent_library_contract():
    layered = {m.strip() for layer in contract("layers")["layers"] for m in layer.split("|")}
    assert top_level_modules() <= layered, f"not in a layer: {sorted(top_level_modules() - layered)}"
    silent = set(contract("silent-library")["source_modules"])
    assert top_level_modules() - {"seqgen.cli"} <= silent, sorted(top_level_modules() - {"seqgen.cli"} - silent)


def test_no_import_cycle_anywhere():
    graph = grimp.build_graph("seqgen", cache_dir=None)
    cycles = [(a, b) for a in sorted(graph.modules) for b in graph.find_modules_directly_imported_by(a)
              if graph.chain_exists(b, a)]
    assert not cycles, f"modules that import each other back: {cycles[:5]}"


def test_imports_inside_functions_are_seen():
    """The promise that the onnxruntime engine never reaches torch holds for lazy imports too."""
    graph = grimp.build_graph("seqgen", include_external_packages=True, cache_dir=None)
    # engines.load imports the torch engine inside a function: the graph must know it
    assert "seqgen.engines.torch_engine" in graph.find_modules_directly_imported_by("seqgen.engines.load")
    assert graph.find_shortest_chain("seqgen.engines.onnx_engine", "torch") is None
    assert graph.find_shortest_chain("seqgen.engines.load", "torch") is not None


def test_nothing_outside_the_cli_prints():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} (sys.{node.attr})")
    assert not offenders, offenders


@pytest.fixture
def toy_package(tmp_path):
    """A three-module package whose bottom layer imports the top one inside a function."""
    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "top.py").write_text("from toy import middle\n")
    (pkg / "middle.py").write_text("from toy import bottom\n")
    (pkg / "bottom.py").write_text("def late():\n    from toy import top\n    return top\n")
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""
        [tool.importlinter]
        root_package = "toy"

        [[tool.importlinter.contracts]]
        name = "toy layers"
        type = "layers"
        layers = ["toy.top", "toy.middle", "toy.bottom"]
    """))
    return tmp_path, config


def _lint(folder: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], cwd=folder, capture_output=True,
                          text=True, env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"})


def test_the_contracts_catch_an_upward_import_inside_a_function(toy_package):
    folder, config = toy_package
    result = _lint(folder, config)
    assert result.returncode != 0 and "BROKEN" in result.stdout.upper(), result.stdout + result.stderr
    assert "toy.bottom" in result.stdout
    # and the same package without the backward import passes
    (folder / "toy" / "bottom.py").write_text("def late():\n    return None\n")
    assert _lint(folder, config).returncode == 0


def test_the_cycle_check_catches_a_cycle(toy_package):
    folder, _ = toy_package
    sys.path.insert(0, str(folder))
    try:
        graph = grimp.build_graph("toy", cache_dir=None)
    finally:
        sys.path.remove(str(folder))
    assert graph.chain_exists("toy.top", "toy.bottom") and graph.chain_exists("toy.bottom", "toy.top")
