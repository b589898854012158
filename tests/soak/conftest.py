"""The soak tests drive ``scripts/soak.py`` (real server and engine processes on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def _load():
    name = "hft_soak_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def soak():
    """``scripts/soak.py`` as a module: ``run_soak``, ``Soak``, ``SoakReport``."""
    return _load()
