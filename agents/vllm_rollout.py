"""vLLM as the training loop's rollout engine (``model.rollout_engine=vllm``), colocated with the trainer.

:func:`make_rollout_engine` is what :data:`opid_gym.builtin.ROLLOUT_ENGINES` names: it
builds a :class:`~agents.vllm_backend.VLLMBackend` in the trainer's own process, from
the same checkpoint folder as the trained policy, attaches the policy (its chat encoder
for prompts, the probe batch of the drift check) and checks at once that engine and
trainer agree on the initial weights. The loop then

* samples every training and evaluation episode through the engine;
* calls ``release()`` before each update (vLLM sleep mode on CUDA: the engine's
  weights go to CPU memory and its KV cache is freed, so the update has the GPU);
* calls ``load_weights(trainer.named_weights())`` after each update and after a
  resume: the full weights (gathered from the FSDP shards when the trainer is sharded)
  go into the engine, its prefix cache is dropped, and the drift check compares the
  engine's and the trainer's log-probs on the probe batch (``WeightSyncError`` when they
  disagree).

Under ``torchrun`` every process gets its own engine on its own GPU: vLLM's
``external_launcher`` executor joins the existing process group with tensor parallel
size 1, so each rank generates its share of the episodes independently (what vLLM calls
external data parallelism, as verl and TRL colocate it).

Settings come from the run's ``model`` section: ``engine_memory`` (the GPU share for
weights + KV cache), ``engine_max_len`` (filled by the loop from the rollout limits),
``engine_options`` (a JSON object: ``VLLMConfig`` fields such as ``enforce_eager``,
``sleep_level``, drift thresholds, or any other ``vllm.LLM`` argument), and the
engine runs in ``model.autocast`` (or ``model.dtype``) precision on GPUs, float32 on CPUs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from agents.vllm_backend import VLLMBackend, VLLMConfig


def engine_config(model: Any, *, cuda: bool, world_size: int) -> VLLMConfig:
    """The :class:`VLLMConfig` of a colocated engine for a run's ``model`` section."""
    from agents.models import resolve_model

    dtype = (model.autocast or model.dtype) if cuda else "float32"
    kwargs: dict[str, Any] = {}
    if world_size > 1:  # one independent engine per torchrun process, on that process's GPU
        kwargs["distributed_executor_backend"] = "external_launcher"
    fields: dict[str, Any] = {}
    options = json.loads(model.engine_options) if getattr(model, "engine_options", None) else {}
    for key, value in options.items():  # VLLMConfig fields by name, anything else to vllm.LLM
        (fields if key in VLLMConfig.__dataclass_fields__ and key != "engine_kwargs" else kwargs)[key] = value
    return VLLMConfig(**{"model": resolve_model(model.name), "dtype": dtype,
                         "max_model_len": model.engine_max_len or 4096,
                         "gpu_memory_utilization": model.engine_memory, **fields, "engine_kwargs": kwargs})


def make_rollout_engine(model: Any, policy: Any) -> VLLMBackend:
    """A colocated vLLM engine serving ``policy``'s weights (see the module docstring)."""
    import torch

    cuda = model.device != "cpu" and torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    engine = VLLMBackend(engine_config(model, cuda=cuda, world_size=world))
    engine.attach_trainer(policy)
    engine.drift_check()  # the engine loaded the policy's own checkpoint: they must agree now
    return engine
