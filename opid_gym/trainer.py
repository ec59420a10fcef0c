"""The trainer: forward, backward and optimiser step behind a small interface.

The loop (:mod:`opid_gym.train`) never touches parameters or optimisers itself; it
asks a :class:`Trainer` to

* ``score`` response tokens under the current (= old, before the update) or the
  reference policy, no gradient → [N, L] (π_old for PPO ratios, π_ref for the KL,
  and every extra scoring pass a learner's ``prepare`` requests);
* ``update`` on the step's batch with a learner's loss (PPO epochs × mini-batches ×
  micro-batches, gradient clipping, AdamW step);
* give its weights (``named_weights``, for a separate rollout engine), its state
  (``state_dict``, for checkpoints) and take a state back (``load_state_dict``).

:class:`LocalTrainer` is the single-process implementation (CPU or one GPU). A
sharded trainer (FSDP over several GPUs under ``torchrun``) is a second implementation
of the same interface: it shards the batch's rows over ranks inside ``score`` and
``update`` (all-reducing the token count so ``LossInputs.num_tokens`` stays the global
one), gathers full state dicts on rank 0 for checkpoints and weight sync, and leaves
learners and the loop unchanged. See docs/training.md.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, ContextManager, Iterable, Literal, Protocol, Sequence, runtime_checkable

import torch

from opid_gym.agent import derive_seed
from opid_gym.backend import TrainablePolicy
from opid_gym.config import OptimConfig
from opid_gym.learner import Learner, LossInputs, LossOutput, StepBatch
from opid_gym.types import Message


class Trainer(Protocol):
    """What the loop needs from whatever holds the parameters (see module docstring)."""

    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]: ...

    def token_strings(self, token_ids: Sequence[int]) -> list[str]: ...

    def score(
        self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
        which: Literal["policy", "ref"] = "policy", width: int | None = None,
    ) -> torch.Tensor: ...

    def update(self, batch: StepBatch, advantages: torch.Tensor, learner: Learner, *, step: int) -> dict[str, float]: ...

    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class Unsharding(Protocol):
    """A trainer whose parameters are sharded across processes: ``unsharded()`` holds the
    full weights while the policy samples itself (:class:`~opid_gym.sharded.ShardedTrainer`)."""

    def unsharded(self) -> ContextManager[None]: ...


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate of training step ``step`` (0-based): linear warm-up, then constant."""
    warmup = int(math.ceil(cfg.warmup_ratio * total_steps))
    if warmup > 0 and step < warmup:
        return cfg.lr * (step + 1) / warmup
    return cfg.lr


def minibatch_rows(n: int, mini_batch_size: int, seed: int, step: int, epoch: int) -> list[torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into ceil(n / size) nearly equal parts."""
    if n == 0:
        return []
    gen = torch.Generator().manual_seed(derive_seed(seed, "minibatch", step, epoch) % (2**63 - 1))
    perm = torch.randperm(n, generator=gen)
    return list(torch.tensor_split(perm, math.ceil(n / mini_batch_size)))


def adamw(params: list[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    """The optimiser of every trainer, from the run's optimiser settings.

    AdamW's fused kernel where every parameter allows it (:func:`fused_adamw_ok`): the
    same update as the default multi-tensor one up to float rounding, in one pass over
    each tensor. On this project's 2-core CPU a step over SmolLM2-135M's 135M parameters
    takes 0.135 s fused against 0.909 s (``python benchmarks/optimizer_step.py``,
    ``benchmarks/results/optimizer_step_2026-12-06.txt``); the demo's warm start takes 48.
    """
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused_adamw_ok(params) or None)


def fused_adamw_ok(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW takes these parameters: plain tensors (not sharded
    ``DTensor``s), floating point, all on one CPU or CUDA device."""
    if not params:
        return False
    devices = {p.device for p in params}
    return (len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda")
            and all(type(p) is torch.nn.Parameter or type(p) is torch.Tensor for p in params)
            and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) for p in params))


def token_strings(policy: TrainablePolicy, token_ids: Sequence[int]) -> list[str]:
    """One decoded string per token id (the backend's ``decode`` of each id alone, else the id)."""
    decode = getattr(policy, "decode", None)
    if not callable(decode):
        return [str(t) for t in token_ids]
    return [decode([t]) for t in token_ids]


def clip_and_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, grad_clip: float) -> float:
    """Clip the gradients' global norm to ``grad_clip`` (``<= 0``: no clipping), take the
    optimiser step unless the norm is not finite (the step is then skipped), clear the
    gradients; returns the norm before clipping. Works for plain and FSDP (DTensor) params."""
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    if math.isfinite(grad_norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def ppo_epochs(cfg: OptimConfig, optimizer: torch.optim.Optimizer, batch: StepBatch, *, step: int,
               total_steps: int, seed: int, minibatch: Callable[[list[int]], dict[str, float]]) -> dict[str, float]:
    """``cfg.epochs`` passes over ``batch`` in seeded mini-batches, one optimiser step each.

    ``minibatch(rows)`` does one optimiser step on those rows and returns its metrics (with
    ``grad_norm``, non-finite when the step was skipped). Returns the mean of each metric
    over optimiser steps, plus the learning rate and the step counts.

    PPO check: the first mini-batch of the first epoch runs before any update, so its
    ratio π_θ/π_old is 1 up to the difference between the numerics that produced
    ``old_logp`` (the sampler's, or the scoring pass) and the update's forward pass.
    Its ``ratio_mean`` and ``clip_frac`` are also reported apart, as ``ppo/first_ratio_mean``
    and ``ppo/first_clip_frac`` (and the other optimiser steps' means as
    ``ppo/rest_ratio_mean`` / ``ppo/rest_clip_frac`` when there are any), so rollout/trainer
    log-prob drift shows in the metrics instead of being averaged away.
    """
    if batch.old_logp is None:
        raise RuntimeError("the batch has no old_logp")
    lr = lr_at(step, total_steps, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    totals: dict[str, float] = {}
    first: dict[str, float] = {}
    n_opt = skipped = 0
    for epoch in range(cfg.epochs):
        for rows in minibatch_rows(len(batch), cfg.mini_batch_size, seed, step, epoch):
            metrics = minibatch(rows.tolist())
            if not math.isfinite(metrics["grad_norm"]):
                skipped += 1
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + v
            if n_opt == 0:
                first = dict(metrics)
            n_opt += 1
    out = {k: v / max(n_opt, 1) for k, v in totals.items()}
    for key in ("ratio_mean", "clip_frac"):
        if key in first:
            out[f"ppo/first_{key}"] = first[key]
            if n_opt > 1:
                out[f"ppo/rest_{key}"] = (totals[key] - first[key]) / (n_opt - 1)
    out["optim/lr"] = lr
    out["optim/steps"] = float(n_opt)
    out["optim/skipped_steps"] = float(skipped)
    return out


def by_length(batch: StepBatch, rows: Sequence[int]) -> list[int]:
    """``rows`` ordered by prompt + response length (ties: their order), for cutting into
    micro-batches: each micro-batch is padded to its longest row, so rows of like length
    waste less. The mini-batch's gradient is the same sum in any order.

    On the demo's warm-start data (rows of 329-834 tokens, mini-batches of 4) two sorted
    micro-batches of 2 take a mini-batch's forward + backward 1.26x faster than one
    micro-batch of 4 on this project's CPU (``python benchmarks/micro_batches.py``,
    ``benchmarks/results/micro_batches_2026-12-06.txt``).
    """
    return sorted(rows, key=lambda r: len(batch.prompt_ids[r]) + len(batch.response_ids[r]))


def micro_batch_loss(policy: TrainablePolicy, batch: StepBatch, advantages: torch.Tensor, learner: Learner,
                     micro: list[int], *, num_tokens: float, step: int, num_seqs: float | None = None) -> LossOutput:
    """The learner's loss on rows ``micro`` of ``batch``, with gradients through ``policy``.

    Every per-row tensor of the batch (``[B, T]`` or ``[B]``) is cut to those rows and to the
    response width of this forward pass (``T_micro <= T``), on the policy's device.
    ``num_tokens`` / ``num_seqs`` are the response-token and row counts of the whole
    mini-batch (the loss divisors); the ``seq-mean-token-sum-norm`` divisor is the run's
    response-token limit (``learner.run.benchmark.max_new_tokens``).
    """
    res = policy.forward_logprobs(
        [batch.prompt_ids[r] for r in micro], [batch.response_ids[r] for r in micro],
        entropy=learner.needs_entropy,
    )
    width = res.logprobs.shape[1]
    device = res.logprobs.device

    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = t[micro]
        return (t[:, :width] if t.dim() >= 2 else t).to(device)

    return learner.loss(LossInputs(
        logp=res.logprobs, old_logp=cut(batch.old_logp), mask=cut(batch.mask),
        advantages=cut(advantages), num_tokens=num_tokens, ref_logp=cut(batch.ref_logp),
        entropy=res.entropy, extras={k: cut(v) for k, v in batch.extras.items()}, step=step,
        num_seqs=num_seqs, norm_length=_response_limit(learner),
    ))


def _response_limit(learner: Learner) -> float | None:
    """The run's response-token limit (``seq-mean-token-sum-norm``'s divisor), None when unknown."""
    run = getattr(learner, "run", None)
    limit = getattr(getattr(run, "benchmark", None), "max_new_tokens", None)
    return float(limit) if limit else None


class LocalTrainer:
    """One process, one device: the policy, a frozen reference copy, AdamW.

    Args:
        policy: the model being optimised (:class:`~opid_gym.backend.TrainablePolicy`).
        optim: optimiser settings. total_steps: for the warm-up schedule.
        keep_ref: keep a frozen copy of the initial policy as π_ref (KL term).
        seed: the run seed (mini-batch order).

    The module stays in ``eval()`` mode throughout (no dropout), so the update's
    log-probs of an unchanged model equal the scoring pass's and ratios start at 1.
    """

    def __init__(self, policy: TrainablePolicy, optim: OptimConfig, *, total_steps: int, keep_ref: bool,
                 seed: int = 0) -> None:
        self.policy = policy
        self.cfg = optim
        self.total_steps = total_steps
        self.seed = seed
        self.module.eval()
        self.ref: TrainablePolicy | None = None
        if keep_ref:  # a frozen copy of the initial policy (the backend's own copy when it has one)
            make_ref = getattr(policy, "reference_copy", None)
            self.ref = make_ref() if callable(make_ref) else copy.deepcopy(policy)
            for p in self.ref.module.parameters():
                p.requires_grad_(False)
        self.params = [p for p in self.module.parameters() if p.requires_grad]  # LoRA: the adapters only
        self.optimizer = adamw(self.params, optim)

    @property
    def module(self) -> torch.nn.Module:
        return self.policy.module

    # ------------------------------------------------------------------ scoring
    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
        return self.policy.encode_chat(messages, max_prompt_tokens)

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return token_strings(self.policy, token_ids)

    @torch.no_grad()
    def score(
        self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
        which: Literal["policy", "ref"] = "policy", width: int | None = None,
    ) -> torch.Tensor:
        """log π(response tokens) under the current or reference policy: [N, width] on CPU."""
        model = self.policy if which == "policy" else self.ref
        if model is None:
            raise RuntimeError("no reference model was kept (kl_coef = 0)")
        width = max((len(r) for r in response_ids), default=0) if width is None else width
        out = torch.zeros(len(response_ids), width)
        size = self.cfg.micro_batch_size
        for start in range(0, len(response_ids), size):
            rows = slice(start, start + size)
            res = model.forward_logprobs(prompt_ids[rows], response_ids[rows])
            lp = res.logprobs.detach().float().cpu() * res.mask.float().cpu()
            out[rows, : lp.shape[1]] = lp[:, :width]
        return out

    # ------------------------------------------------------------------- update
    def update(self, batch: StepBatch, advantages: torch.Tensor, learner: Learner, *, step: int) -> dict[str, float]:
        """PPO epochs over the batch in mini-batches; returns mean metrics over optimiser steps."""
        return ppo_epochs(self.cfg, self.optimizer, batch, step=step, total_steps=self.total_steps, seed=self.seed,
                          minibatch=lambda rows: self._minibatch(batch, advantages, learner, rows, step))

    def _minibatch(self, batch: StepBatch, advantages: torch.Tensor, learner: Learner, rows: list[int],
                   step: int) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        num_tokens = float(batch.mask[rows].sum())
        sums: dict[str, float] = {}
        size = self.cfg.micro_batch_size
        ordered = by_length(batch, rows) if size < len(rows) else rows
        for start in range(0, len(rows), size):
            micro = ordered[start: start + size]
            out = micro_batch_loss(self.policy, batch, advantages, learner, micro, num_tokens=num_tokens,
                                   step=step, num_seqs=float(len(rows)))
            out.loss.backward()
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        sums["grad_norm"] = clip_and_step(self.params, self.optimizer, self.cfg.grad_clip)
        return sums

    # -------------------------------------------------------------------- state
    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """Full-model weights for a rollout engine (LoRA merged when the backend can)."""
        export = getattr(self.policy, "export_state_dict", None)
        return (export() if callable(export) else self.module.state_dict()).items()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
