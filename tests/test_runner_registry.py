"""The board runner (stdlib only, pushed to the device, so it cannot import the registry) names the same runtimes
as the registry: every ``RuntimeSpec.device_name``, in order, and an ``_import`` branch for each."""

from __future__ import annotations

import ast
from pathlib import Path

from edgedeploy import registry
from edgedeploy.devices import runner


def test_runner_runtimes_are_the_registry_device_names() -> None:
    assert list(runner.RUNTIMES) == registry.device_runtime_names()


def test_runner_imports_each_runtimes_package() -> None:
    tree = ast.parse(Path(runner.__file__).read_text())
    (imp,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "_import"]
    branches = {c.comparators[0].value for c in ast.walk(imp) if isinstance(c, ast.Compare)
                and isinstance(c.comparators[0], ast.Constant)}  # fmt: skip
    assert branches == set(runner.RUNTIMES)
    imported = {a.name.split(".")[0] for n in ast.walk(imp) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(imp) if isinstance(n, ast.ImportFrom) and n.module}
    for spec in registry.runtimes().values():
        if spec.device_name:
            assert spec.package in imported, f"runner never imports {spec.package} ({spec.name})"
