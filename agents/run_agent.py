"""``run:<run folder>``: the model a training run ended with, as an agent.

Builds the run's policy from its ``config.json`` (model, backend, dtype) and loads the
model weights of the newest complete checkpoint, so a trained model can be evaluated
again later, e.g. with and without the skill library in its prompts::

    opid-bench eval --agent run:runs/skill-grpo --env alfworld-unseen            # Skill-GRPO
    opid-bench eval --agent run:runs/skill-grpo --env alfworld-unseen --skills   # Skill-GRPO*

The agent carries the run's learner and model name, so the results store files the
evaluation under them (not under the folder's path).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from agents.model_agent import ModelAgent, split_options
from opid_gym.backend import Generator, SamplingParams

_SAMPLING_KEYS = ("temperature", "top_p", "max_new_tokens", "max_prompt_tokens", "stop")
_MODEL_KEYS = ("device", "dtype", "autocast")


class RunAgent(ModelAgent):
    """A :class:`ModelAgent` that remembers which run it came from.

    Attributes:
        run_dir: the run folder. learner: the run's learner name. model_name: its model.
        step: the training step of the loaded checkpoint.
    """

    def __init__(self, generator: Generator, params: SamplingParams, name: str, *, run_dir: str, learner: str,
                 model_name: str, step: int) -> None:
        super().__init__(generator, params, name)
        self.run_dir = run_dir
        self.learner = learner
        self.model_name = model_name
        self.step = step

    def with_params(self, params: SamplingParams) -> RunAgent:
        return RunAgent(self.generator, params, self.name, run_dir=self.run_dir, learner=self.learner,
                        model_name=self.model_name, step=self.step)


def make_agent(run_dir: str, **options: Any) -> RunAgent:
    """The trained policy of the run folder ``run_dir`` (its newest complete checkpoint).

    Options: sampling settings (temperature, top_p, max_new_tokens, max_prompt_tokens,
    stop) and ``device`` / ``dtype`` / ``autocast`` (default: the run's).

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder or holds no complete checkpoint.
    """
    from opid_gym.checkpoint import CheckpointError, load_latest
    from opid_gym.run_folder import RunError, load_run_config
    from opid_gym.train import make_policy

    folder = Path(run_dir).expanduser()
    try:
        cfg = load_run_config(folder)
    except RunError as exc:
        raise FileNotFoundError(str(exc)) from None
    try:  # the newest intact checkpoint (damaged ones are skipped with a warning)
        found = load_latest(folder / "checkpoints")
    except CheckpointError as exc:
        raise FileNotFoundError(str(exc)) from None
    if found is None:
        raise FileNotFoundError(f"run folder {folder} has no complete checkpoint")
    sampling, model_opts = split_options(options, _SAMPLING_KEYS, _MODEL_KEYS)
    if model_opts:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model_opts))
    policy = make_policy(cfg)
    _, meta, objects = found
    policy.module.load_state_dict(objects["trainer"]["model"])
    policy.module.eval()
    step = int(meta.get("loop", {}).get("step", meta.get("step", 0)))
    return RunAgent(policy, sampling, f"run:{run_dir}", run_dir=str(folder), learner=cfg.learner_name,
                    model_name=cfg.model.name, step=step)
