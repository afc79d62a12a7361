"""A fixed linear map from the stand-in's width to a wider one that keeps geometry exactly.

``Q`` (``width x base``) has orthonormal columns, so ``(Qx).(Qy) = x.(Q^T Q)y = x.y``: dot
products, norms and cosines of the widened vectors equal the originals' (to float rounding).
``Q`` comes from the QR factorisation of a Gaussian matrix drawn from a seeded NumPy PCG64
generator (stable across NumPy versions), with the signs fixed by making ``R``'s diagonal
positive (LAPACK builds may differ in sign), so every process and machine gets the same matrix.
"""

from __future__ import annotations

import functools
from typing import Any

SEED = 0x5EED_F1A7


@functools.lru_cache(maxsize=8)
def matrix(base: int, width: int) -> Any:
    """The ``width x base`` float32 matrix (identity when the widths are equal)."""
    import numpy as np

    if width == base:
        return np.eye(base, dtype=np.float32)
    if width < base:
        raise ValueError(f"cannot widen {base} numbers to {width}")
    rng = np.random.Generator(np.random.PCG64(SEED + width * 1000 + base))
    gaussian = rng.standard_normal((width, base))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diag(r))
    return q.astype(np.float32)


def widen(vectors: Any, width: int) -> Any:
    """``vectors`` (n x base, NumPy) mapped to ``width`` columns."""
    if vectors.shape[1] == width:
        return vectors
    return vectors @ matrix(vectors.shape[1], width).T
