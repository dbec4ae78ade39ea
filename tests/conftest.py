from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees a run dir or a config profile from the environment, and JAX caches stay private."""
    for var in ("GRIDRUN_RUN_DIR", "GRIDRUN_FLAGS", "GRIDRUN_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRIDRUN_JAX_CACHE", str(ROOT / ".jax_cache"))
    yield
