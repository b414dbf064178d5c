"""Shared fixtures of the Python module's tests. Run by ctest (tests/CMakeLists.txt) with
PYTHONPATH=<build>/python:tools; by hand from the repository root:

    PYTHONPATH=build/python:tools /usr/bin/python3 -m pytest tests/python_module
"""

from pathlib import Path

import pytest

SOURCE_DIR = Path(__file__).resolve().parents[2]
OP_SETS = SOURCE_DIR / "golden" / "sets" / "ops"
MODEL_SETS = SOURCE_DIR / "golden" / "sets"

# A config small enough for every test to build its own model in milliseconds.
TINY_CONFIG = {
    "name": "pytest-tiny",
    "vocab_size": 64,
    "d_model": 16,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "head_dim": 4,
    "n_experts": 4,
    "top_k": 2,
    "expert_d_ff": 24,
    "max_seq_len": 32,
    "init_seed": 5,
    "init_std": 0.2,
}


@pytest.fixture
def tiny_config():
    return dict(TINY_CONFIG)
