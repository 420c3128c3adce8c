"""Fault self-test of the harness: does the comparison catch and localise known port bugs?

``python -m parity.selftest [--hub DIR] [--fault NAME ...] [--case NAME ...]
[--false-alarm-seeds N] [--only-false-alarm] [--force] [--isolation workers|inprocess|subprocess]
[--job-timeout SECONDS] [--list]``

1. For every case (default: the default suite) the pair's reference side runs once and the
   clean candidate once, teacher-forced with it; the clean candidate must pass (baseline).
2. Every fault of :mod:`parity.faults` runs on the cases where it can show (its ``applies``
   predicate) and the clean candidate passes: the candidate runs under the fault,
   teacher-forced with the same reference run, judged with the default tolerance table. A
   fault is *detected* when at least one case fails; it is *localised* when the first
   divergent stage of every catching case is the fault's expected stage.
3. False alarms: the clean candidate across ``--false-alarm-seeds`` input seeds per case
   (``Case.with_(input_seed=...)`` regenerates the fixture) must pass every stage (end to end
   and teacher-forced). The worst margin is reported per case and overall.

All three are plans of :mod:`parity.engine`; by default each side runs in its own worker
process (``--isolation workers``), both at once, each model built once per worker.
Cases whose ``tolerance_mode`` is ``noise_floor`` (float32) are judged as run_case judges them.

Writes ``selftest.json`` into the hub (default a new ``reports/selftest-<UTC stamp>/``): the
``faults`` list (one dict per fault: the table's columns, the verdict and reason, and the
per-case ``runs``), ``summary`` (the same rows reduced to the table's columns, for a report
section), ``false_alarm``, the clean baseline per case (``clean``), timings and ``verdict``.
The hub may hold other files (e.g. a report); only ``selftest.json`` is written, and a hub
that already holds one is refused unless ``--force``.

Exit codes: 0 every fault detected and localised, the clean candidate passing everywhere, no
false alarm; 1 otherwise; 2 usage errors (unknown fault or case, refused hub, a side that
cannot be imported, a reference that fails), each with a one-line message on stderr.
With ``--case`` but no ``--fault``, faults that no selected case can show are skipped; a
fault named with ``--fault`` that no selected case can show fails (it was not verified).

JSON: non-finite floats are written as the strings "inf" / "nan" (as in CaseResult.to_dict).
"""
from .output import SCHEMA, SCHEMA_VERSION, SELFTEST_JSON, UsageError, check_hub, default_hub, format_table, write_json
from .run import DEFAULT_SEEDS, fault_run, run_selftest, select_cases, select_faults
from .verdicts import SUMMARY_KEYS, summarise_fault, summary_row

__all__ = ["DEFAULT_SEEDS", "SCHEMA", "SCHEMA_VERSION", "SELFTEST_JSON", "SUMMARY_KEYS", "UsageError", "check_hub",
           "default_hub", "fault_run", "format_table", "main", "run_selftest", "select_cases", "select_faults",
           "summarise_fault", "summary_row", "write_json"]


def main(argv=None) -> int:
    from .__main__ import main as _main

    return _main(argv)
