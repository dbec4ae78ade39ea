"""Per-epoch shuffles without a sort: a keyed Feistel permutation with cycle walking.

`jax.random.permutation` sorts random keys, twice for 48,000 rows; on a 2-core CPU the two sorts cost
18 ms of a 0.5 s epoch, and a population sorts once per trial. A Feistel network is a bijection on
`[0, 4**k)` built from a keyed hash; cycle walking (apply it again to values >= n) restricts it to a
bijection on `[0, n)`. Six rounds of the lowbias32 hash give shuffles whose statistics match a random
permutation for SGD's purposes (tested: every row once, no position bias, seeds independent) at
~1 ms for 48,000 rows, and the whole thing is elementwise, so it vmaps over trials for free.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..errors import GridrunError

ROUNDS = 6


def lowbias32(x: jax.Array) -> jax.Array:
    """lowbias32 integer hash (C. Wellons): a cheap, well-mixed uint32 -> uint32 bijection."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


@functools.partial(jax.jit, static_argnames="n")
def permutation(key: jax.Array, n: int) -> jax.Array:
    """A pseudo-random permutation of `range(n)` (int32) drawn from `key`; `n` is static."""
    if n > 2**31 - 1:
        raise GridrunError(f"cannot shuffle {n:,} rows: at most 2**31 - 1 rows per data set")
    if n <= 1:
        return jnp.zeros((n,), jnp.int32)
    half = ((n - 1).bit_length() + 1) // 2  # the domain 2**(2*half) = 4**half is < 4n
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(key, (ROUNDS,), jnp.uint32)

    def feistel(v: jax.Array) -> jax.Array:
        left, right = v >> half, v & mask
        for i in range(ROUNDS):
            left, right = right, left ^ (lowbias32(right ^ round_keys[i]) & mask)
        return (left << half) | right

    def walk(v: jax.Array) -> jax.Array:
        return jnp.where(v >= n, feistel(v), v)

    out = jax.lax.while_loop(lambda v: jnp.any(v >= n), walk, feistel(jax.lax.iota(jnp.uint32, n)))
    return out.astype(jnp.int32)
