"""Starting a run from another run's weights: ``--model run:<run folder>``.

``opid-bench run --learner opid --model run:runs/sft ...`` builds the policy the way
the source run built it (its ``model.name`` and backend; this run's dtype, device and
other model settings) and loads the model weights of the source's newest complete
checkpoint — its final weights, since a run always checkpoints its last step. Those
starting weights are also the reference policy π_ref of the KL term (the trainer keeps
a frozen copy of the initial policy), as SFT-then-RL work does. Optimiser state, step
counter and RNG state are not carried over: the new run starts at step 0.

Chains work (``run:`` of a run that itself started from ``run:``). Runs trained with
LoRA adapters are not supported as sources (their checkpoints hold adapter names).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

RUN_PREFIX = "run:"


def run_source(model_name: str) -> Path | None:
    """The run folder named by ``run:<dir>`` (None for any other model name)."""
    if not model_name.startswith(RUN_PREFIX):
        return None
    return Path(model_name[len(RUN_PREFIX):]).expanduser()


def absolute_model_name(model_name: str) -> str:
    """``run:<dir>`` with ``dir`` made absolute (a saved config then works from any folder)."""
    folder = run_source(model_name)
    return model_name if folder is None else f"{RUN_PREFIX}{folder.resolve()}"


def policy_from_run(cfg: Any, make_policy: Callable[[Any], Any]) -> Any:
    """The policy of ``cfg`` (a RunConfig whose ``model.name`` is ``run:<dir>``), with the
    weights of that run's newest complete checkpoint loaded.

    Raises:
        RunError: ``dir`` is not a run folder, holds no complete checkpoint, or its
            weights do not fit the model.
    """
    from opid_gym.checkpoint import find_latest, load_checkpoint
    from opid_gym.config import ConfigError
    from opid_gym.run_folder import RunError, load_run_config

    folder = run_source(cfg.model.name)
    assert folder is not None
    try:
        source = load_run_config(folder)
    except (RunError, ConfigError) as exc:
        raise RunError(f"--model {cfg.model.name}: {exc}") from None
    latest = find_latest(folder / "checkpoints")
    if latest is None:
        raise RunError(f"--model {cfg.model.name}: run folder {folder} has no complete checkpoint")
    base = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=source.model.name,
                                                              backend=source.model.backend))
    policy = make_policy(base)
    _, objects = load_checkpoint(latest)
    try:
        policy.module.load_state_dict(objects["trainer"]["model"])
    except RuntimeError as exc:
        raise RunError(f"--model {cfg.model.name}: its weights do not fit {source.model.name}: "
                       f"{str(exc).splitlines()[0]}") from None
    policy.module.eval()
    return policy
