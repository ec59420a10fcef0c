"""Persistence of a training run: checkpoints, resume, and the finished run's records.

The third of the loop's jobs (:mod:`opid_gym.parts` builds, :mod:`opid_gym.train`
steps). A checkpoint holds the trainer's state and every RNG state (``objects``) and the
loop counters, the task sampler, the learner's state and the step's metrics line
(``meta``); :func:`restore` puts all of it back so a resumed run continues bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opid_gym.config import RunConfig, config_to_dict
from opid_gym.run_folder import RunError, RunPaths, read_metrics, rewrite_metrics

if TYPE_CHECKING:
    from opid_gym.learner import Learner
    from opid_gym.parts import TaskSampler
    from opid_gym.trainer import Trainer


# --------------------------------------------------------------- loop counters
@dataclass
class LoopState:
    """Counters carried across steps and resumes (saved in every checkpoint)."""

    step: int = 0
    tokens_generated: int = 0
    env_steps: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# -------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------ checkpoints
def save(paths: RunPaths, cfg: RunConfig, state: LoopState, *, sampler: TaskSampler, learner: Learner[Any],
         trainer: Trainer, record: dict[str, Any], is_main: bool) -> None:
    """Write the checkpoint of ``state.step`` (rank 0 writes; every rank gathers)."""
    from opid_gym.checkpoint import CheckpointError, save_checkpoint

    meta = {
        "loop": {"step": state.step, "tokens_generated": state.tokens_generated,
                 "env_steps": state.env_steps, "seconds": state.seconds, "extra": state.extra},
        "sampler": sampler.state_dict(), "learner": learner.state_dict(), "metrics": record,
        "config": config_to_dict(cfg),
    }
    trainer_state = trainer.state_dict()  # with several processes: gathered on rank 0
    if is_main:
        try:
            save_checkpoint(paths.checkpoints, state.step,
                            {"trainer": trainer_state, "rng": rng_state()}, meta, keep=cfg.checkpoint.keep)
        except CheckpointError as exc:  # a diverged update: stop before it spreads, keep the last good one
            raise RunError(f"training diverged: {exc}; the last intact checkpoint is kept "
                           "(lower optim.lr or check the data)") from None


def restore(paths: RunPaths, *, sampler: TaskSampler, learner: Learner[Any], trainer: Trainer,
            is_main: bool) -> LoopState | None:
    """Load the newest intact checkpoint into ``trainer``, ``learner`` and the RNGs.

    Returns its loop counters, or None when there is none (killed before the first
    checkpoint: start over). ``metrics.jsonl`` is cut back to the checkpoint's step.

    Raises:
        RunError: checkpoints exist but none is intact, or the training data changed.
    """
    from opid_gym.checkpoint import CheckpointError, load_latest
    from opid_gym.distributed import broadcast_object

    try:  # damaged checkpoints are skipped with a warning; none intact is an error
        found = load_latest(paths.checkpoints) if is_main else None  # rank 0 reads and sends the rest
    except CheckpointError as exc:
        found = exc
    failed = broadcast_object(str(found) if isinstance(found, CheckpointError) else None)
    if failed is not None:
        raise RunError(f"cannot resume {paths.root}: {failed}")
    if not broadcast_object(found is not None):
        if is_main:
            truncate_metrics(paths, 0, None)
        return None
    _, meta, objects = found if is_main else (None, None, {"trainer": None, "rng": None})
    meta = broadcast_object(meta)
    if meta.get("sampler") != sampler.state_dict():
        raise RunError(f"the training data changed since the checkpoint (was {meta.get('sampler')}, "
                       f"now {sampler.state_dict()}); cannot resume exactly")
    trainer.load_state_dict(objects["trainer"])
    set_rng_state(broadcast_object(objects["rng"]))
    loop = meta["loop"]
    state = LoopState(step=int(loop["step"]), tokens_generated=int(loop["tokens_generated"]),
                      env_steps=int(loop["env_steps"]), seconds=float(loop["seconds"]),
                      extra=dict(loop.get("extra", {})))
    learner.load_state_dict(meta.get("learner", {}))
    if is_main:
        truncate_metrics(paths, state.step, meta.get("metrics"))
    return state


def truncate_metrics(paths: RunPaths, step: int, last_record: dict[str, Any] | None) -> None:
    """Drop lines of steps after the checkpoint; restore the checkpoint step's line if missing."""
    bad: list[str] = []  # damaged lines: skipped with a warning, kept in metrics.jsonl.bad
    records = [r for r in read_metrics(paths.metrics, bad) if int(r.get("step", 0)) <= step]
    if last_record is not None and not any(int(r.get("step", 0)) == step for r in records):
        records.append(last_record)
    rewrite_metrics(paths.metrics, records, bad)


# ----------------------------------------------------------------- finishing
def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (a kill leaves the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record_result(results_db: str | None, cfg: RunConfig, state: LoopState, final: Any, run_dir: Path, *,
                  eval_skills: bool) -> None:
    """RESULTS-STORE HOOK: append this run to the results database (``opid_gym.results``).

    ``eval_skills``: the final evaluation's prompts were rewritten (e.g. library skills).
    """
    import importlib.util

    if importlib.util.find_spec("opid_gym.results") is None:
        return
    try:
        from opid_gym import results

        if not final.to_dict().get("protocol_hash"):
            return  # summaries from before the protocol stamp carry no hash
        cuda = cfg.model.device != "cpu" and _cuda_available()
        config = config_to_dict(cfg)
        if eval_skills:
            config["eval_mode"] = "skills"
        results.record_run(
            results_db, summary=final, config=config, model=cfg.model.name,
            learner=cfg.learner_name, seed=cfg.seed, wall_seconds=state.seconds,
            device_kind="gpu" if cuda else "cpu", devices=1 if cuda else 1 + cfg.env.workers,
            tokens_generated=state.tokens_generated, train_steps=state.step,
            train_env_steps=state.env_steps, run_dir=str(run_dir),
            agent=f"{cfg.model.backend}:{cfg.model.name}",
        )
    except Exception as exc:  # never lose a finished run over the results store
        warnings.warn(f"could not record the run in the results store: {exc}", stacklevel=2)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def print_final(summary: dict[str, Any], run_dir: Path) -> None:
    final = summary.get("final_eval")
    budget = summary["budget"]
    line = (f"run folder: {run_dir}\n{budget['steps']} steps, {budget['tokens_generated']} tokens generated, "
            f"{budget['env_steps']} env steps, {budget['seconds']:.1f}s")
    if final is not None:
        line += f"\nfinal eval on {final['benchmark']}: success {100 * final['success_rate']:.1f}% " \
                f"over {final['episodes']} episodes"
    print(line)
