"""Benchmarks of the forward-parity harness: ``python -m benchmarks.run`` (see benchmarks/README.md).

Sections (each selectable with ``--sections``):

* ``report``: cold wall time of ``python -m parity.report`` on the default suite and its breakdown
  (from the timings the report records in parity_report.json);
* ``compare``: comparator throughput (full per-stage comparison with per-patch statistics vs
  ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``);
* ``forward``: port vs reference forward-pass time per default case, each backend in its own
  worker process with the same thread settings, after warm-up;
* ``scaling``: time and peak memory of one case as the batch and N grow, with the fitted exponent
  of time vs B*N*N.

Every timed figure is the median of several runs with its min and max; the machine's load
average is recorded with each section.
"""
