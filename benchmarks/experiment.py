"""Experiments: a grid of training runs declared in one file, run, resumed and reported.

An experiment file (``benchmarks/experiments/<name>.toml``, or any TOML/JSON file)
declares learners × override sets (variants) × training-data fractions × seeds on one
benchmark, the budget every cell shares, and the figures and tables of its page::

    description = "OPID paper, Table 1, ALFWorld"
    benchmark = "alfworld-unseen"
    model = "Qwen/Qwen2.5-3B-Instruct"      # optional (default: the preset's)
    preset = "paper"                        # optional
    learners = ["grpo", "skill-grpo", "sdar", "opid"]
    seeds = [0, 1, 2]
    fractions = [1.0]                       # env.train_fraction values (default [1.0])
    baseline = "grpo"                       # the method every other is paired with
    figures = ["curves", "task-types"]      # curves (Fig. 3), data-fraction (Fig. 4), task-types (Fig. 5)
    tables = ["methods", "paired"]

    [budget]
    steps = 150                             # the shared budget (training steps)
    tolerance = 0.10                        # tokens / env steps beyond this relative gap are flagged

    [set]                                   # --set overrides of every cell
    "eval.limit" = 20

    [learner_set.opid]                      # overrides of one learner's cells
    analyzer = "hindsight-rules"

    [[variants]]                            # override sets (ablations); default: one, "default"
    name = "no-episode-skills"
    learners = ["opid"]                     # which learners it applies to (default: all)
    set = { "learner.episode_skill_weight" = 0 }
    reference = "OPID without episode-level skills"   # the published row (reference_results.json)

A *method* is (learner, variant); a *cell* is (method, fraction, seed) and is one
``opid-bench run`` whose run folder is ``<root>/<experiment>/<cell id>``.
:func:`run_experiment` starts the cells as separate processes, at most ``jobs`` at a
time (with ``nproc > 1`` one after another, each over ``nproc`` processes), skips
finished cells (``summary.json`` present), continues killed ones with ``opid-bench
resume``, refuses a cell folder whose config differs from the file's (the file
changed: rename the experiment or remove the folder), and leaves alone a cell that
another ``experiment run`` is training (a lock file per cell, held by the cell's process). Every cell's config carries
``experiment = "<name>/<cell>"``, so its results-store record is filed under the
experiment (:func:`store_records`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

DEFAULT_ROOT = Path("runs") / "experiments"
FIGURES = ("curves", "data-fraction", "task-types")
TABLES = ("methods", "paired")
CELL_MODULE = "opid_gym"
"""The module each cell is started with (``python -m opid_gym run ...``); tests that
register their own benchmarks point it at a module that registers them first."""
_KNOWN_KEYS = {"name", "description", "benchmark", "model", "preset", "learners", "seeds", "fractions", "baseline",
               "figures", "tables", "budget", "set", "learner_set", "variants", "gpu", "twin"}


class ExperimentError(ValueError):
    """A bad experiment file or grid (one line, shown as a CLI error)."""


@dataclass(frozen=True)
class Variant:
    """An override set applied to some learners' cells."""

    name: str = "default"
    learners: tuple[str, ...] | None = None
    """The learners it applies to (None: all of the experiment's)."""
    set: tuple[tuple[str, Any], ...] = ()
    reference: str | None = None
    """The published method of ``reference_results.json`` this variant reproduces."""
    description: str = ""


@dataclass(frozen=True)
class Method:
    learner: str
    variant: Variant

    @property
    def key(self) -> str:
        return self.learner if self.variant.name == "default" else f"{self.learner}-{self.variant.name}"

    @property
    def label(self) -> str:
        return self.learner if self.variant.name == "default" else f"{self.learner}: {self.variant.name}"


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: Method
    fraction: float
    seed: int

    @property
    def id(self) -> str:
        frac = "" if self.fraction >= 1 else f"-f{round(100 * self.fraction):03d}"
        return f"{self.method.key}{frac}-s{self.seed}"


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    name: str
    benchmark: str
    learners: tuple[str, ...]
    seeds: tuple[int, ...]
    fractions: tuple[float, ...] = (1.0,)
    model: str | None = None
    preset: str | None = None
    steps: int | None = None
    tolerance: float = 0.10
    baseline: str | None = None
    figures: tuple[str, ...] = ("curves", "task-types")
    tables: tuple[str, ...] = TABLES
    set: tuple[tuple[str, Any], ...] = ()
    learner_set: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    variants: tuple[Variant, ...] = (Variant(),)
    description: str = ""
    gpu: bool = False
    twin: str | None = None
    source: str = ""

    @property
    def methods(self) -> list[Method]:
        out = []
        for v in self.variants:
            for learner in self.learners:
                if v.learners is None or learner in v.learners:
                    out.append(Method(learner, v))
        return out

    def cells(self) -> list[Cell]:
        """The grid, seeds innermost (so a partial grid has whole methods first)."""
        return [Cell(m, f, s) for f in self.fractions for m in self.methods for s in self.seeds]

    @property
    def baseline_method(self) -> Method | None:
        if self.baseline is None:
            return None
        for m in self.methods:
            if m.key == self.baseline:
                return m
        raise ExperimentError(f"{self.name}: baseline {self.baseline!r} is not a method of the experiment "
                              f"({', '.join(m.key for m in self.methods)})")

    def overrides(self, cell: Cell) -> list[str]:
        """The ``--set`` items of a cell: budget, experiment-wide, per learner, variant, fraction, seed."""
        items = [f"{k}={_text(v)}" for k, v in self.set]
        items += [f"{k}={_text(v)}" for k, v in dict(self.learner_set).get(cell.method.learner, ())]
        items += [f"{k}={_text(v)}" for k, v in cell.method.variant.set]
        if self.steps is not None:
            items.append(f"steps={self.steps}")
        items += [f"env.train_fraction={cell.fraction!r}", f"seed={cell.seed}", f"experiment={self.name}/{cell.id}"]
        return items


def _text(value: Any) -> str:
    """A TOML value as ``--set`` text (strings as they are, others as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _pairs(table: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if table is None:
        return ()
    if not isinstance(table, Mapping):
        raise ExperimentError(f"{where} must be a table of KEY = VALUE")
    return tuple((str(k), v) for k, v in table.items())


def _list(data: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> tuple[Any, ...]:
    value = data.get(key, default)
    if value is None:
        raise ExperimentError(f"{where}: missing {key!r}")
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool)
                                                           for v in value):
        raise ExperimentError(f"{where}: {key!r} must be a non-empty list of {kind.__name__}")
    if len(set(value)) != len(value):
        raise ExperimentError(f"{where}: {key!r} lists a value twice")
    return tuple(value)


def parse_experiment(data: Mapping[str, Any], name: str, source: str = "") -> Experiment:
    """Check and build an :class:`Experiment` from a parsed file (raises :class:`ExperimentError`)."""
    where = source or name
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        from opid_gym.registry import suggest

        raise ExperimentError(f"{where}: unknown key {unknown[0]!r}." + suggest(unknown[0], sorted(_KNOWN_KEYS)))
    if not isinstance(data.get("benchmark"), str):
        raise ExperimentError(f"{where}: 'benchmark' (a benchmark id) is required")
    learners = _list(data, "learners", str, where)
    seeds = _list(data, "seeds", int, where)
    fractions = tuple(float(f) for f in _list(data, "fractions", (int, float), where, [1.0]))  # type: ignore[arg-type]
    if any(not 0 < f <= 1 for f in fractions):
        raise ExperimentError(f"{where}: fractions must be in (0, 1]")
    budget = data.get("budget") or {}
    if not isinstance(budget, Mapping) or set(budget) - {"steps", "tolerance"}:
        raise ExperimentError(f"{where}: [budget] takes steps and tolerance")
    steps = budget.get("steps")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ExperimentError(f"{where}: budget.steps must be an integer >= 1")
    figures = _list(data, "figures", str, where, list(FIGURES))
    tables = _list(data, "tables", str, where, list(TABLES))
    for kind, values, known in (("figure", figures, FIGURES), ("table", tables, TABLES)):
        for v in values:
            if v not in known:
                raise ExperimentError(f"{where}: unknown {kind} {v!r} (known: {', '.join(known)})")
    learner_set = data.get("learner_set") or {}
    if not isinstance(learner_set, Mapping):
        raise ExperimentError(f"{where}: [learner_set.<learner>] must be tables")
    variants = []
    for i, v in enumerate(data.get("variants") or [{"name": "default"}]):
        if not isinstance(v, Mapping) or not isinstance(v.get("name"), str) or set(v) - {
                "name", "learners", "set", "reference", "description"}:
            raise ExperimentError(f"{where}: variants[{i}] needs a name and takes learners, set, reference, "
                                  "description")
        vl = v.get("learners")
        if vl is not None and (not isinstance(vl, list) or set(vl) - set(learners)):
            raise ExperimentError(f"{where}: variant {v['name']!r}: learners must be a list of the experiment's "
                                  "learners")
        variants.append(Variant(v["name"], tuple(vl) if vl is not None else None, _pairs(v.get("set"), where),
                                v.get("reference"), str(v.get("description", ""))))
    if len({v.name for v in variants}) != len(variants):
        raise ExperimentError(f"{where}: two variants share a name")
    exp = Experiment(
        name=str(data.get("name", name)), benchmark=data["benchmark"], learners=learners, seeds=seeds,
        fractions=fractions, model=data.get("model"), preset=data.get("preset"), steps=steps,
        tolerance=float(budget.get("tolerance", 0.10)), baseline=data.get("baseline"), figures=figures,
        tables=tables, set=_pairs(data.get("set"), where),
        learner_set=tuple((str(k), _pairs(v, f"{where}: learner_set.{k}")) for k, v in learner_set.items()),
        variants=tuple(variants), description=str(data.get("description", "")), gpu=bool(data.get("gpu", False)),
        twin=data.get("twin"), source=source,
    )
    exp.baseline_method  # noqa: B018 - checks the baseline names a method
    if not exp.methods:
        raise ExperimentError(f"{where}: no (learner, variant) pair: every variant names other learners")
    return exp


def shipped_dir() -> Path:
    return Path(str(resources.files("benchmarks").joinpath("experiments")))


def shipped_names() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.toml"))


def load_experiment(name_or_file: str | os.PathLike[str]) -> Experiment:
    """A shipped experiment by name, or an experiment file (``.toml`` or ``.json``)."""
    path = Path(name_or_file)
    if not path.is_file():
        shipped = shipped_dir() / f"{name_or_file}.toml"
        if not shipped.is_file():
            from opid_gym.registry import suggest

            raise ExperimentError(f"no experiment {str(name_or_file)!r} (neither a file nor a shipped experiment)."
                                  + suggest(str(name_or_file), shipped_names()))
        path = shipped
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ExperimentError(f"{path} is not valid {path.suffix[1:].upper() or 'TOML'}: {exc}") from None
    return parse_experiment(data, path.stem, str(path))


# ------------------------------------------------------------------ cells' state
def cell_config(exp: Experiment, cell: Cell, data_root: str | None = None) -> Any:
    """The resolved :class:`~opid_gym.config.RunConfig` of a cell (checks every override)."""
    from opid_gym.config import ConfigError, resolve_config

    items = exp.overrides(cell)
    if data_root:
        items.insert(0, f"env.data_root={Path(data_root).expanduser().resolve()}")
    try:
        return resolve_config(cell.method.learner, exp.benchmark, model=exp.model, preset=exp.preset, set_items=items)
    except ConfigError as exc:
        raise ExperimentError(f"{exp.name}: cell {cell.id}: {exc}") from None


@dataclass
class CellState:
    cell: Cell
    folder: Path
    state: str
    """``done`` (summary.json), ``partial`` (a run folder without summary), ``pending``
    (``experiment status`` shows a partial or pending cell whose lock is held as ``running``)."""
    steps_done: int = 0
    steps_total: int | None = None


def cell_state(exp: Experiment, cell: Cell, root: Path) -> CellState:
    folder = experiment_dir(exp, root) / cell.id
    if (folder / "summary.json").is_file():
        state = "done"
    elif (folder / "config.json").is_file():
        state = "partial"
    else:
        state = "pending"
    done = 0
    if (folder / "metrics.jsonl").is_file():
        from benchmarks.runfolder import read_jsonl

        done = max((int(r.get("step", 0)) for r in read_jsonl(folder / "metrics.jsonl")), default=0)
    return CellState(cell, folder, state, done, exp.steps)


def experiment_dir(exp: Experiment, root: str | os.PathLike[str] | None) -> Path:
    return Path(root if root is not None else DEFAULT_ROOT) / exp.name


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    out.get("env", {}).pop("data_root", None)
    return out


def check_cell_folder(exp: Experiment, cell: Cell, folder: Path, cfg: Any) -> None:
    """Refuse a cell folder whose saved config is not the cell's (the experiment file changed)."""
    from opid_gym.config import config_to_dict

    path = folder / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ExperimentError(f"{path} is not valid JSON; remove the cell folder to rerun it") from None
    want = _comparable(config_to_dict(cfg))
    have = _comparable(saved)
    if have != want:
        diff = sorted(_diff_keys(want, have))
        raise ExperimentError(f"cell {cell.id}: {folder} holds a run of another config (differs in "
                              f"{', '.join(diff[:4])}); the experiment changed: rename it or remove that folder")


def _diff_keys(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


# ---------------------------------------------------------------------- running
@dataclass
class _Job:
    cell: Cell
    proc: subprocess.Popen
    started: float
    log: Any
    action: str
    lock: Any


def _cell_argv(exp: Experiment, cell: Cell, folder: Path, action: str, *, nproc: int, data_root: str | None,
               results_db: str | None, module: str) -> list[str]:
    argv = [sys.executable, "-m", module]
    if data_root:
        argv += ["--data-root", str(Path(data_root).expanduser().resolve())]
    if results_db:
        argv += ["--results-db", str(Path(results_db).expanduser().resolve())]
    if action == "resume":
        argv += ["resume", str(folder)]
    else:
        argv += ["run", "--learner", cell.method.learner, "--env", exp.benchmark, "--out", str(folder)]
        if exp.model:
            argv += ["--model", exp.model]
        if exp.preset:
            argv += ["--preset", exp.preset]
        for item in exp.overrides(cell):
            argv += ["--set", item]
    argv.append("--no-progress")
    if nproc > 1:
        argv += ["--nproc", str(nproc)]
    return argv


def _lock_cell(path: Path) -> Any:
    """An exclusive lock on one cell (an open file, released when closed or when the process
    dies), or None when another ``experiment run`` holds it."""
    import fcntl

    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def run_experiment(exp: Experiment, root: str | os.PathLike[str] | None = None, *, jobs: int = 1, nproc: int = 1,
                   data_root: str | None = None, results_db: str | None = None, module: str | None = None,
                   only: Sequence[str] | None = None, out: Any = None) -> int:
    """Run the grid's unfinished cells; returns 0 when every cell is done, else 1.

    Args:
        root: where experiment folders live (default ``runs/experiments``).
        jobs: cells running at once (separate processes). With ``nproc > 1`` cells run
            one after another, each over ``nproc`` processes (``opid-bench run --nproc``).
        data_root / results_db: passed to every cell.
        module: the module cells are started with (default :data:`CELL_MODULE`).
        only: run only these cell ids.
        out: where progress lines go (default stderr).
    """
    out = out or sys.stderr
    if jobs < 1 or nproc < 1:
        raise ExperimentError("--jobs and --nproc must be >= 1")
    if nproc > 1:
        jobs = 1
    cells = exp.cells()
    if only:
        unknown = sorted(set(only) - {c.id for c in cells})
        if unknown:
            raise ExperimentError(f"{exp.name} has no cell {unknown[0]!r}")
        cells = [c for c in cells if c.id in set(only)]
    folder = experiment_dir(exp, root)
    configs = {c.id: cell_config(exp, c, data_root) for c in cells}  # every cell is checked before any runs
    states = {c.id: cell_state(exp, c, Path(root) if root is not None else DEFAULT_ROOT) for c in cells}
    for c in cells:
        check_cell_folder(exp, c, states[c.id].folder, configs[c.id])
    _write_manifest(exp, folder)
    todo = [c for c in cells if states[c.id].state != "done"]
    skipped = len(cells) - len(todo)
    print(f"experiment {exp.name}: {len(cells)} cells, {skipped} finished (skipped), {len(todo)} to run, "
          f"{jobs} at a time; folder {folder}", file=out, flush=True)
    (folder / "logs").mkdir(exist_ok=True)
    running: list[_Job] = []
    failed: list[str] = []
    elsewhere: list[str] = []
    start = time.perf_counter()
    try:
        while todo or running:
            while todo and len(running) < jobs:
                cell = todo.pop(0)
                lock = _lock_cell(folder / "logs" / f"{cell.id}.lock")
                if lock is None:  # another `experiment run` trains it now
                    elsewhere.append(cell.id)
                    print(f"  skip  {cell.id} (another experiment run is training it)", file=out, flush=True)
                    continue
                states[cell.id] = cell_state(exp, cell, folder.parent)  # it may have finished meanwhile
                if states[cell.id].state == "done":
                    lock.close()
                    continue
                action = "resume" if states[cell.id].state == "partial" else "run"
                log = open(folder / "logs" / f"{cell.id}.log", "a", encoding="utf-8")
                argv = _cell_argv(exp, cell, states[cell.id].folder, action, nproc=nproc, data_root=data_root,
                                  results_db=results_db, module=module or CELL_MODULE)
                log.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} {action}: {' '.join(argv)}\n")
                log.flush()
                # the cell inherits the lock: a cell left running by a killed scheduler still holds it
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
                                        pass_fds=(lock.fileno(),))
                running.append(_Job(cell, proc, time.perf_counter(), log, action, lock))
                print(f"  start {cell.id} ({action})", file=out, flush=True)
            time.sleep(0.2)
            for job in list(running):
                code = job.proc.poll()
                if code is None:
                    continue
                running.remove(job)
                job.log.close()
                job.lock.close()
                secs = time.perf_counter() - job.started
                ok = code == 0 and (states[job.cell.id].folder / "summary.json").is_file()
                if not ok:
                    failed.append(job.cell.id)
                print(f"  {'done ' if ok else 'FAILED'} {job.cell.id} in {secs:.0f}s"
                      + ("" if ok else f" (exit {code}; log: {folder / 'logs' / (job.cell.id + '.log')})"),
                      file=out, flush=True)
    finally:
        for job in running:  # interrupted: stop the cells; `experiment run` again resumes them
            job.proc.terminate()
        for job in running:
            try:
                job.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                job.proc.kill()
            job.log.close()
            job.lock.close()
    done = len(cells) - len(failed) - len(elsewhere)
    print(f"experiment {exp.name}: {done}/{len(cells)} cells done ({time.perf_counter() - start:.0f}s)"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; still training in another run: {', '.join(elsewhere)}" if elsewhere else ""),
          file=out, flush=True)
    return 1 if failed or elsewhere else 0


def _child_env() -> dict[str, str]:
    """The cells' environment: this one, with this checkout first on the import path."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        env["PYTHONPATH"] = os.pathsep.join([here, *paths])
    return env


def _write_manifest(exp: Experiment, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"name": exp.name, "source": exp.source, "experiment": _plain(exp),
           "cells": [{"id": c.id, "learner": c.method.learner, "variant": c.method.variant.name,
                      "fraction": c.fraction, "seed": c.seed} for c in exp.cells()]}
    tmp = folder / "experiment.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "experiment.json")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------- status
def store_records(exp: Experiment, results_db: str | None = None) -> dict[str, Any]:
    """The results-store records of the experiment's cells, by cell id (latest wins)."""
    from opid_gym.results import ResultsStore, resolve_results_path

    path = resolve_results_path(results_db)
    if not path.exists():
        return {}
    out = {}
    for r in ResultsStore(path).query(benchmark=exp.benchmark, kind="run"):
        tag = r.config.get("experiment") if isinstance(r.config, Mapping) else None
        if isinstance(tag, str) and tag.startswith(exp.name + "/"):
            out[tag.split("/", 1)[1]] = r
    return out


def status_lines(exp: Experiment, root: str | os.PathLike[str] | None = None,
                 results_db: str | None = None) -> list[str]:
    """The grid's progress: one line per cell and a total."""
    root_path = Path(root) if root is not None else DEFAULT_ROOT
    states = [cell_state(exp, c, root_path) for c in exp.cells()]
    records = store_records(exp, results_db)
    width = max(len(s.cell.id) for s in states)
    lines = [f"experiment {exp.name} ({exp.benchmark}; folder {experiment_dir(exp, root_path)})",
             f"{'cell':{width}s}  {'state':8s} {'steps':>9s} {'success':>8s}  results store"]
    for s in states:
        steps = f"{s.steps_done}/{s.steps_total}" if s.steps_total else str(s.steps_done)
        success = ""
        if s.state == "done":
            summary = json.loads((s.folder / "summary.json").read_text(encoding="utf-8"))
            final = summary.get("final_eval") or {}
            if "success_rate" in final:
                success = f"{100 * float(final['success_rate']):.1f}%"
        rec = records.get(s.cell.id)
        state = s.state
        lock_path = s.folder.parent / "logs" / f"{s.cell.id}.lock"
        if state != "done" and lock_path.is_file():
            lock = _lock_cell(lock_path)
            if lock is None:  # an `experiment run` holds it: the cell is training now
                state = "running"
            else:
                lock.close()
        lines.append(f"{s.cell.id:{width}s}  {state:8s} {steps:>9s} {success:>8s}  "
                     f"{'recorded ' + rec.id[:8] if rec else '-'}")
    counts = {k: sum(s.state == k for s in states) for k in ("done", "partial", "pending")}
    lines.append(f"{counts['done']}/{len(states)} done, {counts['partial']} partial, {counts['pending']} pending")
    return lines


# ------------------------------------------------------------------ the command
def command(args: Any) -> int:
    """``opid-bench experiment list|run|status|report``."""
    from opid_gym.cli import CLIError

    try:
        if args.action == "list":
            for name in shipped_names():
                exp = load_experiment(name)
                print(f"{name:34s} {len(exp.cells()):3d} cells  {'GPU' if exp.gpu else 'CPU'}  {exp.description}")
            return 0
        if not args.experiment:
            raise CLIError(f"experiment {args.action} needs an experiment name or file (see `opid-bench "
                           "experiment list`)")
        exp = load_experiment(args.experiment)
        db = getattr(args, "results_db", None)
        if args.action == "run":
            return run_experiment(exp, args.root, jobs=args.jobs, nproc=args.nproc,
                                  data_root=getattr(args, "data_root", None), results_db=db, only=args.cell or None)
        if args.action == "status":
            print("\n".join(status_lines(exp, args.root, db)))
            return 0
        from benchmarks.experiment_report import write_experiment_report

        path = write_experiment_report(exp, args.root, args.out, results_db=db)
        print(f"wrote {path}")
        return 0
    except ExperimentError as exc:
        raise CLIError(str(exc)) from None


def add_arguments(p: Any) -> None:
    p.add_argument("action", choices=["list", "run", "status", "report"])
    p.add_argument("experiment", nargs="?", help="a shipped experiment's name (see `experiment list`) or a "
                                                 ".toml/.json file")
    p.add_argument("--root", default=None, help=f"folder of experiment folders (default: {DEFAULT_ROOT})")
    p.add_argument("--jobs", type=int, default=1, help="run: cells training at once, as separate processes")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="run: train each cell over N processes (GPUs; FSDP), cells one after another")
    p.add_argument("--cell", action="append", default=[], metavar="ID", help="run: only this cell (repeatable)")
    p.add_argument("--out", default=None, help="report: output file (default: <experiment folder>/report.html)")
