"""The ``parity`` command: one entry point for the harness's command lines.

``parity report ARGS``, ``parity selftest ARGS`` and ``parity fixtures ARGS`` hand ARGS,
unchanged, to the ``main(argv)`` of parity.report, parity.selftest and parity.fixtures (their
``--help`` lists their flags; ``python -m parity.<name>`` works as well). ``parity compare`` and
``parity show`` inspect captures and finished hubs without running a model
(:mod:`parity.inspection`). Each command is imported only when it is asked for.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

PROG = "parity"

#: name -> (module, function, one-line description)
COMMANDS: Dict[str, Tuple[str, str, str]] = {
    "report": ("parity.report.__main__", "main",
               "run the parity cases (or recheck a hub's captures) and write a report hub"),
    "selftest": ("parity.selftest", "main",
                 "prove the harness catches the documented port bugs and raises no false alarm"),
    "fixtures": ("parity.fixtures", "main", "regenerate the stored fixtures, or --check them against the manifest"),
    "compare": ("parity.inspection", "compare_main",
                "compare two capture files stage by stage with the comparator and the tolerance table"),
    "show": ("parity.inspection", "show_main",
             "print a finished hub's summary, one case, or one stage's message and figures"),
}

EXIT_CODES = """\
exit codes (every command):
  0    pass
  1    parity failure (a stage failed, or drifted against --baseline)
  2    bad usage or bad input: one line on stderr naming the flag or file; nothing written
  3    a case could not run (crash, timeout, missing backend); takes precedence over 1"""


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("parity")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown (not installed)"


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"usage: {PROG} COMMAND [ARGS ...]    ({PROG} COMMAND --help for the command's flags)",
             f"       {PROG} --version", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines += ["", EXIT_CODES, "", "examples:",
              f"  {PROG} report --case n64_g1 --hub reports/try1",
              f"  {PROG} show reports/try1 n64_g1 canvas     # its message, figures and capture files",
              f"  {PROG} compare REFERENCE.npz CANDIDATE.npz --stage canvas"]
    return "\n".join(lines)


def command(name: str) -> Callable[[Sequence[str]], int]:
    module, func, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), func)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help", "help"):
        print(usage())
        return 0
    if first == "--version":
        print(f"{PROG} {version()}")
        return 0
    if first not in COMMANDS:
        what = "option" if first.startswith("-") else "command"
        print(f"{PROG}: error: unknown {what} {first!r}; commands are {', '.join(COMMANDS)} (see {PROG} --help)",
              file=sys.stderr)
        return 2
    try:
        return int(command(first)(rest) or 0)
    except BrokenPipeError:  # e.g. `parity show HUB | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
