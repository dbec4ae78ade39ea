"""JAX's persistent compilation cache, enabled once on the first fit.

Default folder ~/.cache/gridrun/jax; GRIDRUN_JAX_CACHE=<folder> relocates it, "0"/"off"/"" disables it.
A run that compiled the same program before (same model structure, batch size, data shapes) then
skips XLA compilation, which matters for short trials and for new worker processes of a sweep.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "GRIDRUN_JAX_CACHE"
_done = False


def enable_persistent_cache() -> str | None:
    """Point JAX at the cache folder (once per process); returns the folder or None when disabled."""
    global _done
    if _done:
        return jax.config.jax_compilation_cache_dir
    _done = True
    value = os.environ.get(ENV, str(Path.home() / ".cache" / "gridrun" / "jax"))
    if value.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if jax.config.jax_compilation_cache_dir:  # the user configured one already: keep theirs
        return jax.config.jax_compilation_cache_dir
    try:
        Path(value).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        from jax._src import compilation_cache  # noqa: PLC0415 - reset a cache initialized before us

        if compilation_cache.is_initialized():
            compilation_cache.reset_cache()
    except Exception:  # a read-only home or an older JAX: the cache is an optimisation only
        return None
    return value
