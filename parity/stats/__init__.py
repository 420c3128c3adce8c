"""Statistics of one stage: pure NumPy functions, no I/O, no logging.

* :mod:`.errors`: error statistics of a stage (``error_stats``), and ``compare_arrays``: error
  statistics, per-patch errors and per-patch statistics of a stage in one chunked pass;
* :mod:`.patches`: per-patch errors and per-patch statistics of a (B, C, N, N) stage;
* :mod:`.reductions`: the chunk-wise building blocks (exact quantiles, ULPs, running arg-max).

JSON encoding of the results lives in :mod:`parity.jsonable`.
"""
from parity.jsonable import to_json  # parity.selftest imports it from here

__all__ = ["to_json"]
