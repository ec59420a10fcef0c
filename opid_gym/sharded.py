"""The sharded trainer: PyTorch FSDP2 (``fully_shard``) over the processes of a ``torchrun``.

A second implementation of :class:`~opid_gym.trainer.Trainer` (data parallelism with
sharded parameters, gradients and optimiser state; ZeRO-3 style). Every rank runs the
same training loop and holds the same whole :class:`~opid_gym.learner.StepBatch` (token
ids and [N, L] floats: small); the model work on it is split by rows:

* ``score``: rank r scores rows r, r + W, r + 2W, ... (W = world size), micro-batched;
  the rows are all-gathered so every rank returns the whole [N, width] tensor.
* ``update``: the mini-batch order is the single-process one (same seed). Rank r runs
  forward/backward on its rows of each mini-batch. ``LossInputs.num_tokens`` is the
  token count of the WHOLE mini-batch (every rank can count it: the batch is
  replicated), so the token-mean losses of all ranks' micro-batches add up to the
  spec's mini-batch token mean. FSDP's reduce-scatter averages gradients over ranks;
  each rank's loss is multiplied by W to turn that average back into the sum. The
  gradient norm is the global one (DTensor), clipping and AdamW act on the shards.
  The result equals the single-process update up to float summation order
  (tests/test_sharded.py: 2 gloo processes vs one, 3 updates).
* FSDP forwards are collectives, so every rank runs the same number of forward and
  backward passes: a rank with fewer rows runs a one-token dummy pass with zero loss.
* ``named_weights``: full tensors, parameter by parameter (one all-gather each), on every
  rank, for the rollout engine beside each rank (colocated vLLM); staged in CPU memory.
* ``state_dict``: full model and optimiser state on rank 0 only (on the CPU), in a form
  independent of the number of processes; ``load_state_dict`` takes it on rank 0 and
  broadcasts it.
* ``unsharded()``: the full parameters gathered on every rank for as long as the
  context lasts, so each rank can sample its own share of the rollouts with the trained
  model (``model.rollout_engine=trainer``) without lock-step collectives.

Not supported: LoRA adapters (a clear error; use full fine-tuning).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Sequence

import torch

from opid_gym import distributed
from opid_gym.backend import TrainablePolicy
from opid_gym.config import OptimConfig
from opid_gym.learner import Learner, StepBatch
from opid_gym.trainer import adamw, by_length, clip_and_step, micro_batch_loss, ppo_epochs, token_strings
from opid_gym.types import Message


@dataclass(frozen=True)
class FSDPSettings:
    """How the model is sharded.

    Attributes:
        reshard_after_forward: free the gathered parameters after each block's forward
            (ZeRO-3: least memory; False keeps them until the backward, ZeRO-2 style:
            one all-gather less per block and step, more memory).
        cpu_offload: keep parameter shards, gradients and AdamW states in CPU memory
            (``CPUOffloadPolicy``); the optimiser step runs on the CPU.
        param_dtype: all-gather and compute in this dtype (``bfloat16``) with float32
            master weights and float32 gradient reduction; None: the parameters' dtype.
    """

    reshard_after_forward: bool = True
    cpu_offload: bool = False
    param_dtype: str | None = None


def fsdp_settings(model: Any) -> FSDPSettings:
    """The sharding settings of a run's ``model`` config section.

    On CUDA with ``model.autocast`` set, parameters are all-gathered and used in that dtype
    (float32 master weights and gradient reduction); on CPUs in their own dtype.
    """
    cuda = model.device != "cpu" and torch.cuda.is_available()
    return FSDPSettings(reshard_after_forward=model.fsdp_reshard_after_forward, cpu_offload=model.fsdp_cpu_offload,
                        param_dtype=model.autocast if cuda else None)


def _dtype(name: str | None) -> torch.dtype | None:
    return {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def block_classes(module: torch.nn.Module) -> set[str]:
    """Class names of the model's transformer blocks (transformers' ``_no_split_modules``)."""
    names = getattr(module, "_no_split_modules", None) or []
    return {str(n) for n in names}


def shard_module(module: torch.nn.Module, settings: FSDPSettings) -> list[Any]:
    """``fully_shard`` every transformer block, then the root (embeddings, norm, head).

    Returns the FSDP modules, root last.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=_dtype(settings.param_dtype),
                              reduce_dtype=torch.float32 if settings.param_dtype else None)
    offload = CPUOffloadPolicy() if settings.cpu_offload else OffloadPolicy()
    kw = dict(reshard_after_forward=settings.reshard_after_forward, mp_policy=mp, offload_policy=offload)
    blocks = block_classes(module)
    sharded = []
    for sub in list(module.modules()):
        if sub is not module and type(sub).__name__ in blocks:
            fully_shard(sub, **kw)
            sharded.append(sub)
    fully_shard(module, **kw)
    sharded.append(module)
    return sharded


class ShardedTrainer:
    """FSDP2 data-parallel trainer (one process per device under ``torchrun``); see the module docstring.

    Args:
        policy: the trainable policy, NOT yet sharded (this class shards it in place).
        optim: optimiser settings. total_steps: for the warm-up schedule.
        keep_ref: keep a frozen, also sharded copy of the initial policy as π_ref.
        seed: the run seed (mini-batch order, the same as the single-process trainer's).
        fsdp: sharding settings.
    """

    def __init__(self, policy: TrainablePolicy, optim: OptimConfig, *, total_steps: int, keep_ref: bool,
                 seed: int = 0, fsdp: FSDPSettings = FSDPSettings()) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("the sharded trainer needs a process group: start the run with torchrun "
                               "(opid-bench run ... --nproc N)")
        if hasattr(policy.module, "peft_config"):
            raise RuntimeError("LoRA adapters are not supported with FSDP here: train the full model, "
                               "or run LoRA in one process")
        self.dist = distributed.current()
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.policy = policy
        self.cfg = optim
        self.total_steps = total_steps
        self.seed = seed
        self.fsdp = fsdp
        self.ref: Any = None
        if keep_ref:  # copied before sharding: a frozen copy of the initial policy
            make_ref = getattr(policy, "reference_copy", None)
            if not callable(make_ref):
                raise RuntimeError("the policy backend has no reference_copy(): cannot keep π_ref under FSDP")
            self.ref = make_ref()
            for p in self.ref.module.parameters():
                p.requires_grad_(False)
        self._fsdp_modules = shard_module(self.module, fsdp)
        if self.ref is not None:
            shard_module(self.ref.module, fsdp)
        self.module.eval()
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = adamw(self.params, optim)
        self._pad = int(getattr(policy, "pad_id", 0))

    @property
    def module(self) -> torch.nn.Module:
        return self.policy.module

    # -------------------------------------------------------------- plumbing
    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
        return self.policy.encode_chat(messages, max_prompt_tokens)

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return token_strings(self.policy, token_ids)

    def _rounds(self, n: int) -> int:
        """Micro-batch passes every rank makes for n rows (the busiest rank's count)."""
        return math.ceil(math.ceil(n / self.world) / self.cfg.micro_batch_size) if n else 0

    def _dummy(self, model: Any) -> Any:
        """A one-token pass that keeps this rank in step with the FSDP collectives."""
        return model.forward_logprobs([[self._pad]], [[self._pad]])

    # ---------------------------------------------------------------- score
    @torch.no_grad()
    def score(
        self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
        which: Literal["policy", "ref"] = "policy", width: int | None = None,
    ) -> torch.Tensor:
        """log π(response tokens): [N, width] on CPU, the same on every rank (rows split, then gathered)."""
        model = self.policy if which == "policy" else self.ref
        if model is None:
            raise RuntimeError("no reference model was kept (kl_coef = 0)")
        n = len(response_ids)
        width = max((len(r) for r in response_ids), default=0) if width is None else width
        mine = list(range(self.rank, n, self.world))
        size = self.cfg.micro_batch_size
        parts: list[tuple[list[int], torch.Tensor]] = []
        for k in range(self._rounds(n)):
            rows = mine[k * size:(k + 1) * size]
            if not rows:
                self._dummy(model)
                continue
            res = model.forward_logprobs([prompt_ids[r] for r in rows], [response_ids[r] for r in rows])
            parts.append((rows, (res.logprobs.detach().float() * res.mask.float()).cpu()))
        out = torch.zeros(n, width)
        for rank_parts in distributed.all_gather_objects(parts):
            for rows, lp in rank_parts:
                out[rows, : min(lp.shape[1], width)] = lp[:, :width]
        return out

    # --------------------------------------------------------------- update
    def update(self, batch: StepBatch, advantages: torch.Tensor, learner: Learner, *, step: int) -> dict[str, float]:
        """PPO epochs × mini-batches, each rank on its rows; metrics are global means over optimiser steps."""
        return ppo_epochs(self.cfg, self.optimizer, batch, step=step, total_steps=self.total_steps, seed=self.seed,
                          minibatch=lambda rows: self._minibatch(batch, advantages, learner, rows, step))

    def _minibatch(self, batch: StepBatch, advantages: torch.Tensor, learner: Learner, rows: list[int],
                   step: int) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        num_tokens = float(batch.mask[rows].sum())  # the whole mini-batch's: every rank holds the batch
        mine = by_length(batch, rows[self.rank::self.world])
        size = self.cfg.micro_batch_size
        sums: dict[str, float] = {}
        for k in range(self._rounds(len(rows))):
            micro = mine[k * size:(k + 1) * size]
            if not micro:
                res = self._dummy(self.policy)
                (res.logprobs.sum() * 0.0).backward()
                continue
            out = micro_batch_loss(self.policy, batch, advantages, learner, micro, num_tokens=num_tokens,
                                   step=step, num_seqs=float(len(rows)))
            (out.loss * self.world).backward()  # FSDP averages over ranks; the loss is a global sum
            for key, v in out.metrics.items():
                sums[key] = sums.get(key, 0.0) + float(v)
        total: dict[str, float] = {}
        for rank_sums in distributed.all_gather_objects(sums):
            for key, v in rank_sums.items():
                total[key] = total.get(key, 0.0) + v
        total["grad_norm"] = clip_and_step(self.params, self.optimizer, self.cfg.grad_clip)
        return total

    # ---------------------------------------------------------- rollouts
    @contextlib.contextmanager
    def unsharded(self) -> Iterator[None]:
        """Full parameters on every rank inside the block (no collectives in its forwards)."""
        mods = self._fsdp_modules
        for m in mods:
            m.set_reshard_after_forward(False, recurse=False)
        for m in mods:
            m.unshard()
        try:
            yield
        finally:
            for m in mods:
                m.reshard()
                m.set_reshard_after_forward(self.fsdp.reshard_after_forward, recurse=False)

    # ---------------------------------------------------------------- state
    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """Full tensors under the model's own names, on every rank (one all-gather per tensor).

        A collective: every rank must consume the whole iterator, in order. Gathered GPU
        tensors are moved to CPU memory one by one (in the mixed-precision compute dtype
        when there is one, e.g. bf16), so a consumer that keeps them all (the vLLM load
        does) holds the full model in host memory, not on the GPU.
        """
        stage = _dtype(self.fsdp.param_dtype)  # the compute dtype, which the engine runs in too
        for name, tensor in self.module.state_dict().items():
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            full = full.detach()
            if full.is_cuda:
                if stage is not None and full.is_floating_point():
                    full = full.to(stage)
                full = full.to("cpu")
            yield name, full

    def state_dict(self) -> dict[str, Any]:
        """Full model and optimiser state on rank 0 (CPU); empty on the other ranks. A collective."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model, optim = get_state_dict(self.module, self.optimizer, options=opts)
        # AdamW's `step` counters are live 0-dim tensors (updated in place): copy them, or a
        # state taken before an update would change with it
        for per_param in optim.get("state", {}).values():
            for key, value in per_param.items():
                if torch.is_tensor(value) and value.dim() == 0:
                    per_param[key] = value.clone()
        return {"format": "fsdp-full", "model": model, "optimizer": optim}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Load :meth:`state_dict`'s output, given on rank 0 (other ranks may pass None). A collective."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
        )

        usable = distributed.broadcast_object(bool(state) and state.get("format") == "fsdp-full"
                                              if self.rank == 0 else None)
        if not usable:
            raise RuntimeError("this checkpoint was written by the single-process trainer; resume it without "
                               "torchrun, or start a new run")
        state = state if self.rank == 0 else {"model": {}, "optimizer": {}}
        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        # two calls: set_state_dict skips the model on ranks that pass an empty model dict
        set_model_state_dict(self.module, state["model"], options=opts)
        set_optimizer_state_dict(self.module, self.optimizer, state["optimizer"], options=opts)
