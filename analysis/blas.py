"""Keep BLAS single-threaded inside the fitting loops.

L-BFGS-B (scipy ≥ 1.15, in C) calls BLAS on p ≤ 5 vectors every iteration. OpenBLAS then wakes its thread
pool each time; on a shared 2-core machine that made a 0.8 s fit take 20 s. Nothing here benefits from
BLAS threads, so the fitting entry points run under a one-thread limit (threadpoolctl ships with
scikit-learn; without it the decorator does nothing).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def single_blas_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with every BLAS/OpenMP pool limited to one thread."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            return fn(*args, **kwargs)
        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper
