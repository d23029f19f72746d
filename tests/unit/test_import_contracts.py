"""The import contracts bite: the same tree with one I/O import added to core fails lint-imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the four layers and the project's contracts, to break on purpose."""
    for package in ("core", "eventstore", "projections", "api"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


FORBIDDEN = ("asyncio", "threading", "concurrent.futures", "os", "safetensors", "structlog")


def test_an_io_import_in_core_breaks_the_build(tree: Path) -> None:
    """The copy passes as it is; with I/O imports added to core it fails, naming each one."""
    assert lint_imports(tree).returncode == 0, "the unmodified copy must pass"
    codec = tree / "core" / "codec.py"
    codec.write_text(codec.read_text() + "".join(f"\nimport {m}  # noqa" for m in FORBIDDEN) + "\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    for module in FORBIDDEN:
        assert f"core.codec -> {module.split('.')[0]}" in result.stdout, module
