"""python -m parity.selftest: the command line of the fault self-test (see parity.selftest)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .. import faults as fault_catalogue
from ..engine import ISOLATIONS
from ..pool import DEFAULT_JOB_TIMEOUT
from . import __doc__ as DOC
from .output import SELFTEST_JSON, UsageError, check_hub, default_hub, format_table, write_json
from .run import DEFAULT_SEEDS, run_selftest, select_cases, select_faults


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m parity.selftest", description=DOC.split("\n\n")[0])
    p.add_argument("--hub", type=Path, help="folder for selftest.json (default: a new reports/selftest-<stamp>/)")
    p.add_argument("--fault", nargs="+", action="extend", metavar="NAME", help="run only these faults")
    p.add_argument("--case", nargs="+", action="extend", metavar="NAME", help="run only these cases")
    p.add_argument("--false-alarm-seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                   help=f"input seeds per case for the false-alarm check (default {DEFAULT_SEEDS}; 0 skips it)")
    p.add_argument("--only-false-alarm", action="store_true", help="run only the false-alarm check")
    p.add_argument("--force", action="store_true", help="replace an existing selftest.json in --hub")
    p.add_argument("--pair", default=None, metavar="REFERENCE:CANDIDATE",
                   help="the pair whose candidate the faults are injected into (default reference_tf:torch_impl)")
    p.add_argument("--isolation", choices=list(ISOLATIONS), default="workers",
                   help="where the sides run: one worker process per side (default), this process, or a fresh "
                        "process per job")
    p.add_argument("--job-timeout", type=float, default=DEFAULT_JOB_TIMEOUT, metavar="SECONDS",
                   help=f"a side's job that runs longer is killed and reported (default {DEFAULT_JOB_TIMEOUT:g})")
    p.add_argument("--backward", action="store_true",
                   help="the backward-only faults (forward exact, gradient wrong) through the backward comparison: "
                        "each must pass the forward and be caught at its expected adjoint stage or weight")
    p.add_argument("--list", action="store_true", help="list the faults and the cases they apply to, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _list(out) -> None:
    from .. import cases as case_registry

    suite = case_registry.suite("default")
    for f in fault_catalogue.FAULTS:
        names = [c.name for c in suite if f.applicable(c)]
        print(f"{f.name:<28} {f.expected_stage:<18} {f.description}", file=out)
        print(f"{'':<28} applies to {f.applies.text}: {', '.join(names) or 'NO default case'}", file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    prog = "parity.selftest"
    try:
        if args.false_alarm_seeds < 0:
            raise UsageError(f"--false-alarm-seeds must be >= 0, got {args.false_alarm_seeds}")
        if args.only_false_alarm and args.false_alarm_seeds == 0:
            raise UsageError("--only-false-alarm needs --false-alarm-seeds >= 1")
        if not args.job_timeout > 0:
            raise UsageError(f"--job-timeout must be > 0 seconds, got {args.job_timeout}")
        if args.list:
            _list(sys.stdout)
            return 0
        from ..pairs import PairError, resolve_pair

        try:
            pair = resolve_pair(args.pair)
        except PairError as exc:
            raise UsageError(str(exc)) from None
        # validate names and the hub before anything slow runs
        select_cases(args.case, pair.cases)
        if args.backward:
            from .backward import backward_faults

            try:
                backward_faults(args.fault)
            except KeyError as exc:
                raise UsageError(str(exc.args[0])) from None
        else:
            select_faults(args.fault)
        hub = args.hub if args.hub is not None else default_hub()
        name = "selftest_backward.json" if args.backward else SELFTEST_JSON
        check_hub(hub, args.force, name)
        progress = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
        if args.backward:
            from .backward import format_backward_table, run_backward_selftest

            doc = run_backward_selftest(faults=args.fault, cases=args.case, isolation=args.isolation,
                                        job_timeout=args.job_timeout, pair=pair, progress=progress)
            doc["argv"], doc["hub"] = list(sys.argv[1:] if argv is None else argv), str(hub)
            print(format_backward_table(doc))
            check_hub(hub, args.force, name)
            write_json(hub / name, doc)
            print(f"wrote {hub / name}")
            return 0 if doc["verdict"] == "pass" else 1
        doc = run_selftest(faults=args.fault, cases=args.case, false_alarm_seeds=args.false_alarm_seeds,
                           only_false_alarm=args.only_false_alarm, isolation=args.isolation, pair=pair,
                           job_timeout=args.job_timeout, progress=progress)
        doc["argv"] = list(sys.argv[1:] if argv is None else argv)
        doc["hub"] = str(hub)
        print(format_table(doc))
        check_hub(hub, args.force)  # still ours to write (nobody wrote one meanwhile)
        write_json(hub / SELFTEST_JSON, doc)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {hub / SELFTEST_JSON}")
    return 0 if doc["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
