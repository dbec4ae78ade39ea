"""Device-memory sizing: how many trials of a kind one program may hold."""

from __future__ import annotations

import numpy as np

from .request import FitRequest


def device_free_bytes() -> int:
    """Free memory of the default JAX device; for the CPU, the host's available memory."""
    import jax

    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend has stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def trial_bytes(request: FitRequest) -> int:
    """Rough device memory one trial needs: weights with optimizer/gradient/best copies, plus activations."""
    import jax

    own = getattr(request.engine, "trial_bytes", None)
    if own is not None:  # gridrun.fit_loop's engine knows its own state and batch sizes
        return int(own(request))
    if request.initial is not None:
        shapes = request.initial
    else:
        shapes = jax.eval_shape(request.engine.init, request.hparams, request.k_init)
    state_bytes = sum(int(np.prod(s.shape)) * getattr(s.dtype, "itemsize", 8) for s in jax.tree_util.tree_leaves(shapes))
    cfg = request.engine.config
    width = int(np.prod(cfg.input_shape)) + state_bytes // 4 // max(1, int(np.prod(cfg.input_shape)))
    batch_rows = max(cfg.batch_size, min(4096, max(cfg.n_val, 1)))
    return 2 * state_bytes + 4 * 4 * batch_rows * width


def auto_size(request: FitRequest, fraction: float = 0.5, cap: int | None = None) -> int:
    """How many trials of this kind fit in `fraction` of the free device memory, at most `cap`
    (PopulationConfig.size_cap)."""
    budget = int(device_free_bytes() * fraction)
    size = max(1, budget // max(1, trial_bytes(request)))
    if cap is not None:
        size = min(size, max(1, int(cap)))
    return int(size)
