"""What a report run is asked to do (:class:`ReportOptions`) and the checked plan made from it.

:func:`make_plan` validates everything (cases, suite, dtype, devices, tolerance file, baseline,
recheck source and each of its captures, the cases' fixture and weight files, hub path)
*before* anything is written, and raises :class:`ReportInputError`
with one sentence naming what was wrong and what is allowed; the CLI prints it and exits 2.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from parity import engine as engine_mod
from parity.capture import CaptureError, load_capture
from parity.cases import Case
from parity.divergences import DivergenceError, Registry, registry_for
from parity.pairs import PairError, load_pair_from, resolve_pair
from parity.pool import DEFAULT_JOB_TIMEOUT
from parity.tolerances import DTYPES, NOISE_FLOOR_K, ToleranceTable, load_tolerances

from . import hub as hub_mod
from .devices import DeviceStatus, parse_devices, resolve_devices

ISOLATIONS = tuple(engine_mod.ISOLATIONS)  # inprocess, workers, subprocess
DEFAULT_ISOLATION = "workers"
TOLERANCE_MODES = tuple(engine_mod.TOLERANCE_MODES)  # table, noise_floor
PER_CASE = "per_case"  # no --tolerance-mode: every case uses its own (parity.cases.Case.tolerance_mode)
DEFAULT_DRIFT_FACTOR = 10.0


class ReportInputError(ValueError):
    """Bad usage or bad input: one sentence, exit code 2, nothing written."""


@dataclass(frozen=True)
class ReportOptions:
    """A report run. ``None`` means "the default" (which for a recheck is the source's value).

    hub: output folder (None: ``reports_root/<UTC timestamp>``); suite / cases: what to run
    (cases win); devices: e.g. ``("cpu", "cuda")``; dtype: override every case's dtype;
    tolerances: TOML file (None: parity/tolerances.toml); tolerance_mode: table | noise_floor
    (None: each case's own mode); isolation: inprocess | workers | subprocess (None: workers);
    baseline: an earlier hub to compare errors with; recheck: a hub whose captures are
    re-compared instead of running the models; figures: write PNGs; background: write each
    case's files in a thread while the next case runs (False: right after it, in this thread).
    """

    hub: Optional[Path] = None
    suite: Optional[str] = None
    cases: Tuple[str, ...] = ()
    devices: Optional[Tuple[str, ...]] = None
    dtype: Optional[str] = None
    tolerances: Optional[Path] = None
    tolerance_mode: Optional[str] = None
    noise_floor_k: float = NOISE_FLOOR_K
    isolation: Optional[str] = None
    baseline: Optional[Path] = None
    drift_factor: float = DEFAULT_DRIFT_FACTOR
    recheck: Optional[Path] = None
    junit: Optional[Path] = None
    force: bool = False
    figures: bool = True
    background: bool = True
    reports_root: Path = Path("reports")
    command: Tuple[str, ...] = ()
    pair: Optional[str] = None  # "REFERENCE:CANDIDATE" or a pair name (None: reference_tf:torch_impl)
    pair_from: Optional[str] = None  # "module:object": a Pair, or a factory returning one
    job_timeout: float = DEFAULT_JOB_TIMEOUT
    divergences: Optional[Path] = None  # a registry file on top of the pair's shipped one (--divergences)
    no_divergences: bool = False  # apply no known divergence: the raw verdicts (--no-divergences)
    train_steps: Optional[int] = None  # K Adam steps of one case on both sides (parity.training); None: none
    train_loss: str = "loss_nll"
    train_batches: str = "seeded:20"
    train_case: Optional[str] = None  # None: the first case of the run
    backward: bool = False  # also compare the gradients (parity.backward; docs/backward.md)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k.startswith("train_") and self.train_steps is None:
                continue  # a report without training steps records what it always did
            out[k] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return out


@dataclass
class SourceCase:
    """A case entry of the recheck source and its capture files (role -> path)."""

    entry: Dict[str, Any]
    files: Dict[str, Path]
    sides: Dict[str, str] = field(default_factory=dict)  # role -> side name


@dataclass
class Plan:
    options: ReportOptions
    hub: hub_mod.Hub
    earlier: Optional[Dict[str, Any]]
    mode: str  # "run" | "recheck"
    cases: List[Case]
    devices: List[DeviceStatus]
    table: ToleranceTable
    tolerance_path: Path
    tolerance_mode: Optional[str]  # None: each case's own mode
    isolation: str
    suite: Optional[str]
    baseline: Optional[Dict[str, Any]] = None
    source: Optional[Dict[str, Any]] = None
    source_cases: List[SourceCase] = field(default_factory=list)
    in_place: bool = False
    engine: Any = None  # parity.engine.Engine of the pair (its workers serve the whole report)
    refused: Dict[str, Dict[str, str]] = field(default_factory=dict)  # case -> {side: why it cannot express it}
    busy_s: Optional[float] = None  # wall time during which a side was working (set by the runner)
    divergences: Optional[Registry] = None  # the known divergences applied to the verdicts
    train_case: Optional[Case] = None  # the case of --train-steps

    @property
    def available_devices(self) -> List[str]:
        return [d.device for d in self.devices if d.available]

    @property
    def tolerance_mode_name(self) -> str:
        return self.tolerance_mode or PER_CASE


def _fail(msg: str) -> ReportInputError:
    return ReportInputError(msg)


def _resolve_cases(opts: ReportOptions, case_registry) -> Tuple[List[Case], Optional[str]]:
    if opts.cases:
        unknown = [c for c in opts.cases if c not in case_registry.CASES]
        if unknown:
            raise _fail(f"unknown case {unknown[0]!r}; known cases are {', '.join(sorted(case_registry.CASES))}")
        chosen = [case_registry.CASES[c] for c in dict.fromkeys(opts.cases)]
        suite = None
    else:
        suite = opts.suite or "default"
        if suite not in case_registry.SUITES:
            raise _fail(f"unknown suite {suite!r}; allowed are {', '.join(case_registry.SUITES)}")
        chosen = list(case_registry.suite(suite))
    if opts.dtype is not None:
        # keep the case's name: the dtype is its own field in the report
        chosen = [c if c.dtype == opts.dtype else c.with_(dtype=opts.dtype, name=c.name) for c in chosen]
    return chosen, suite


def _check_writable_file(path: Path, what: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if path.exists() and not path.is_file():
        raise _fail(f"{what} {path} exists and is not a file")
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise _fail(f"{what} {path} cannot be written ({probe} is not a writable folder)")


def _load_source(opts: ReportOptions, mode: Optional[str]) -> Tuple[Dict[str, Any], List[SourceCase]]:
    src = Path(opts.recheck)
    try:
        doc = hub_mod.read_report(src)
    except hub_mod.HubError as exc:
        raise _fail(f"--recheck: {exc}") from None
    root = src if src.is_dir() else src.parent
    entries = [e for e in doc["cases"] if isinstance(e, dict) and "name" in e]
    if opts.cases:
        names = [e["name"] for e in entries]
        unknown = [c for c in opts.cases if c not in names]
        if unknown:
            raise _fail(f"--case {unknown[0]!r} is not in the recheck source {root}; it has {', '.join(names)}")
        entries = [e for e in entries if e["name"] in opts.cases]
    out: List[SourceCase] = []
    for e in entries:
        if e.get("error"):
            out.append(SourceCase(e, {}, dict(e.get("sides") or {})))
            continue
        key = e.get("key") or hub_mod.case_key(e["name"], e.get("device", "cpu"))
        files, sides = _source_files(root, key, e)
        for role in ("reference", "candidate"):
            if role not in files or not files[role].is_file():
                missing = files[role].relative_to(root) if role in files else f"the {role} capture"
                raise _fail(f"--recheck source {root} has no captures for case {e['name']} (missing "
                            f"{missing}); only a hub written by python -m parity.report "
                            f"with its captures/ folder can be rechecked")
        if e.get("tolerance_mode") == "noise_floor" and not files.get("reference_float32", root / "?").is_file():
            raise _fail(f"--recheck source {root}: case {e['name']} ran in noise_floor mode but its "
                        f"reference_float32 capture is missing")
        if mode == "noise_floor" and e.get("dtype") == "float32" and e.get("tolerance_mode") != "noise_floor":
            raise _fail(f"--tolerance-mode noise_floor needs a float64 oracle, but case {e['name']} of {root} ran in "
                        f"{e.get('tolerance_mode', 'table')} mode; recheck with --tolerance-mode table, or run "
                        f"again with --tolerance-mode noise_floor")
        present = {r: p for r, p in files.items() if p.is_file()}
        for path in present.values():  # read each one now, before the hub is claimed
            try:
                load_capture(path)
            except CaptureError as exc:
                raise _fail(f"--recheck: {_one_line(exc)}") from None
        out.append(SourceCase(e, present, sides))
    return doc, out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_input_files(cases: List[Case], registry) -> None:
    """Read every stored fixture (sha256 against its manifest) and weight file the cases use
    (for a pair whose case registry offers the check)."""
    check = getattr(registry, "check_case_files", None)
    if check is None:
        return
    try:
        check(cases)
    except (ValueError, OSError) as exc:  # FixtureError, a weights file: the message names the file
        raise _fail(_one_line(exc)) from None


def _source_files(root: Path, key: str, e: Dict[str, Any]) -> Tuple[Dict[str, Path], Dict[str, str]]:
    """role -> capture path of a source case, and role -> side: from the entry's ``captures``
    map (hubs that name captures after sides), else the file names of earlier hubs."""
    listed = dict(e.get("captures") or {})
    if "port" in listed:  # earlier hubs called the candidate role "port"
        listed["candidate"] = listed.pop("port")
    sides = dict(e.get("sides") or {})
    if listed and all(r in hub_mod.CAPTURE_ROLES for r in listed):
        return {role: root / rel for role, rel in listed.items()}, sides
    folder = root / hub_mod.CAPTURES / key
    files = {role: folder / name for role, name in hub_mod.LEGACY_CAPTURE_FILES.items()}
    return files, sides or {"reference": "reference_tf", "candidate": "torch_impl"}


def planned_paths(keys: List[str]) -> List[str]:
    """Paths a report owns, for the clash check against the user's own files."""
    return list(hub_mod.FIXED_FILES) + [f"{d}/{k}" for k in keys for d in (hub_mod.ANALYSIS, hub_mod.CAPTURES)]


def make_plan(opts: ReportOptions) -> Plan:
    """Validate ``opts`` (raise ReportInputError) and resolve it; writes nothing."""
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise _fail(f"unknown dtype {opts.dtype!r}; allowed are {', '.join(DTYPES)}")
    if opts.tolerance_mode is not None and opts.tolerance_mode not in TOLERANCE_MODES:
        raise _fail(f"unknown tolerance mode {opts.tolerance_mode!r}; allowed are {', '.join(TOLERANCE_MODES)}")
    if opts.isolation is not None and opts.isolation not in ISOLATIONS:
        raise _fail(f"unknown isolation {opts.isolation!r}; allowed are {', '.join(ISOLATIONS)}")
    if not (math.isfinite(opts.drift_factor) and opts.drift_factor >= 1):
        raise _fail(f"--drift-factor must be a finite number >= 1, got {opts.drift_factor}")
    if not (math.isfinite(opts.noise_floor_k) and opts.noise_floor_k > 0):
        raise _fail(f"--noise-floor-k must be a finite number > 0, got {opts.noise_floor_k}")
    if opts.suite is not None and opts.cases:
        raise _fail("give either --suite or --case, not both")
    if not (math.isfinite(opts.job_timeout) and opts.job_timeout > 0):
        raise _fail(f"--job-timeout must be a finite number of seconds > 0, got {opts.job_timeout}")
    recheck = opts.recheck is not None
    if recheck and opts.backward:
        raise _fail("--backward cannot be combined with --recheck (a recheck re-compares stored captures, which "
                    "hold no gradients); run the report with --backward instead")
    if recheck:
        given = [flag for flag, v in (("--suite", opts.suite), ("--dtype", opts.dtype), ("--devices", opts.devices),
                                      ("--isolation", opts.isolation), ("--pair", opts.pair),
                                      ("--pair-from", opts.pair_from), ("--train-steps", opts.train_steps))
                 if v is not None]
        if given:
            raise _fail(f"{given[0]} cannot be combined with --recheck (a recheck re-compares the stored captures; "
                        f"it runs no model); allowed with --recheck: --hub, --case, --tolerances, --tolerance-mode, "
                        f"--noise-floor-k, --baseline, --drift-factor, --divergences, --no-divergences, --junit, "
                        f"--force")
    if opts.divergences is not None and opts.no_divergences:
        raise _fail("give either --divergences FILE or --no-divergences, not both")

    if opts.pair is not None and opts.pair_from is not None:
        raise _fail("give either --pair or --pair-from, not both")
    pair = pair_option(*(_source_pair(opts.recheck) if recheck else (opts.pair, opts.pair_from)))
    if not recheck:
        for side in dict.fromkeys((pair.reference, pair.candidate)):
            problem = side_class(side).setup_problem()
            if problem:
                raise _fail(f"side {side}: {problem}")
    tol_path = Path(opts.tolerances) if opts.tolerances is not None else None
    try:
        table = load_tolerances(tol_path, stages=pair.stage_names)
    except (ValueError, OSError) as exc:
        raise _fail(f"--tolerances: {exc}") from None
    tol_path = Path(table.path)

    baseline = None
    if opts.baseline is not None:
        try:
            baseline = hub_mod.read_report(Path(opts.baseline))
        except hub_mod.HubError as exc:
            raise _fail(f"--baseline: {exc}") from None

    if opts.junit is not None:
        _check_writable_file(Path(opts.junit), "--junit")

    source, source_cases, cases, suite, refused, train_case = None, [], [], None, {}, None
    if recheck:
        mode = opts.tolerance_mode
        source, source_cases = _load_source(opts, mode)
        divergences = _divergences(opts, pair, source)
        devices = []
        for e in source.get("devices", []) or []:
            if isinstance(e, dict) and "device" in e:
                devices.append(DeviceStatus(e["device"], e.get("status") == "available", e.get("reason"),
                                            dict(e.get("names") or {})))
        isolation = (source.get("config") or {}).get("isolation", DEFAULT_ISOLATION)
        engine = engine_mod.Engine(pair, isolation="inprocess")  # a recheck runs no side
        keys = [sc.entry.get("key") or hub_mod.case_key(sc.entry["name"], sc.entry.get("device", "cpu"))
                for sc in source_cases]
        suite = (source.get("config") or {}).get("suite")
    else:
        cases, suite = _resolve_cases(opts, pair.cases)
        refused = pair.refusals(cases)
        if refused and len(refused) == len(cases):
            first = next(iter(refused.items()))
            raise _fail(f"no case of {'--case' if opts.cases else 'suite ' + repr(suite)} can be expressed by the "
                        f"pair {pair.spec}: {len(refused)} refused (e.g. {first[0]}: "
                        f"{'; '.join(f'{k}: {v}' for k, v in first[1].items())})")
        cases = [c for c in cases if c.name not in refused]
        _check_input_files(cases, pair.cases)
        divergences = _divergences(opts, pair, None)
        if opts.train_steps is not None:
            train_case = _train_case(opts, cases, pair)
        mode = opts.tolerance_mode
        isolation = opts.isolation or DEFAULT_ISOLATION
        engine = engine_mod.Engine(pair, isolation=isolation, job_timeout=opts.job_timeout)
        try:
            wanted = list(opts.devices) if opts.devices is not None else ["cpu"]
            wanted = parse_devices(",".join(wanted))
        except ValueError as exc:
            raise _fail(str(exc)) from None
        devices = resolve_devices(wanted, engine)
        if not any(d.available for d in devices):
            why = "; ".join(f"{d.device}: {d.reason}" for d in devices)
            raise _fail(f"none of the requested devices is available ({why}); nothing to run; "
                        f"add cpu to --devices or run on a machine that has them")
        keys = [hub_mod.case_key(c.name, d.device) for d in devices if d.available for c in cases]

    if train_case is not None:
        keys = keys + ["training"]  # analysis/training/ is the report's

    if opts.hub is not None:
        hub_root = Path(opts.hub)
    else:
        hub_root = hub_mod.new_hub_path(Path(opts.reports_root))
    in_place = False
    if recheck:
        src_root = Path(opts.recheck)
        src_root = src_root if src_root.is_dir() else src_root.parent
        in_place = hub_root.exists() and hub_root.resolve() == src_root.resolve()
    hub = hub_mod.Hub(hub_root)
    try:
        earlier = hub.check(force=opts.force, planned=planned_paths(keys))
    except hub_mod.HubError as exc:
        raise _fail(str(exc)) from None
    if opts.junit is not None and Path(opts.junit).resolve() == (hub_root / hub_mod.REPORT_JSON).resolve():
        engine.close()
        raise _fail("--junit must not be the hub's parity_report.json")
    return Plan(options=opts, hub=hub, earlier=earlier, mode="recheck" if recheck else "run", cases=cases,
                devices=devices, table=table, tolerance_path=tol_path, tolerance_mode=mode, isolation=isolation,
                suite=suite, baseline=baseline, source=source, source_cases=source_cases, in_place=in_place,
                engine=engine, divergences=divergences, refused=refused if not recheck else {},
                train_case=train_case)


def _divergences(opts: ReportOptions, pair, source: Optional[Dict[str, Any]]) -> Registry:
    """The known divergences of this run: the pair's shipped registry (with --divergences FILE on
    top; none with --no-divergences). A recheck given neither flag applies the entries its
    source hub recorded (a source written before the registry existed: the shipped one)."""
    recorded = (source or {}).get("divergences")
    if (source is not None and isinstance(recorded, dict) and recorded.get("pair") == pair.name
            and opts.divergences is None and not opts.no_divergences):
        try:
            return Registry.from_dict(recorded)
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(f"--recheck: the source's recorded divergences cannot be read ({exc}); recheck with "
                        f"--divergences FILE or --no-divergences") from None
    try:
        return registry_for(pair, extra=opts.divergences, enabled=not opts.no_divergences)
    except DivergenceError as exc:
        raise _fail(f"divergence registry: {exc}") from None


def _train_case(opts: ReportOptions, cases: List[Case], pair) -> Case:
    """The case of --train-steps, checked: steps, loss, batches, and K within the batches."""
    from parity import training

    if isinstance(opts.train_steps, bool) or not isinstance(opts.train_steps, int) or opts.train_steps < 1:
        raise _fail(f"--train-steps must be a whole number >= 1, got {opts.train_steps!r}")
    if opts.train_loss not in training.LOSSES:
        raise _fail(f"unknown --train-loss {opts.train_loss!r}; allowed are {', '.join(training.LOSSES)}")
    try:
        kind, n = training.parse_batches(opts.train_batches)
    except training.TrainingError as exc:
        raise _fail(f"--train-batches: {exc}") from None
    if opts.train_case is None:
        case = cases[0]
    elif opts.train_case in [c.name for c in cases]:
        case = next(c for c in cases if c.name == opts.train_case)
    elif opts.train_case in pair.cases.CASES:
        case = pair.cases.CASES[opts.train_case]
        if opts.dtype is not None and case.dtype != opts.dtype:
            case = case.with_(dtype=opts.dtype, name=case.name)
    else:
        raise _fail(f"unknown --train-case {opts.train_case!r}; known cases are {', '.join(sorted(pair.cases.CASES))}")
    if n is None:  # split: one sample a batch
        n = int(pair.prepare(case)[2]["diffraction"].shape[0])
    if opts.train_steps > n:
        raise _fail(f"--train-steps {opts.train_steps} is more than the {n} batch{'es' if n != 1 else ''} "
                    f"--train-batches {opts.train_batches} provides for case {case.name}; allowed are 1..{n} "
                    f"(or more batches: --train-batches seeded:N)")
    return case


def _source_pair(src: Path) -> Tuple[Optional[str], Optional[str]]:
    """The pair a recheck source ran: (name, the module:object it was loaded from); (None, None)
    is the default (an unreadable source is reported by the source checks that follow)."""
    try:
        pair = hub_mod.read_report(Path(src)).get("pair")
    except (hub_mod.HubError, OSError, ValueError):
        return None, None
    return (pair.get("name"), pair.get("origin")) if isinstance(pair, dict) else (None, None)


def side_class(name: str):
    from parity.sides import side_class as find

    return find(name)


def pair_option(spec: Optional[str], pair_from: Optional[str] = None):
    try:
        return load_pair_from(pair_from) if pair_from else resolve_pair(spec)
    except (PairError, ValueError) as exc:
        raise _fail(f"{'--pair-from' if pair_from else '--pair'}: {exc}") from None
