"""The learner interface: what a training algorithm provides to the generic loop.

A learner is a class registered by name in :data:`opid_gym.LEARNERS` (built-ins are
listed in :mod:`opid_gym.builtin`). The loop (:mod:`opid_gym.train`) calls, every
training step and in this order:

1. :meth:`Learner.rollout_prompt_hook` (once, at start): an optional rewrite of the
   student's prompts during training rollouts (Skill-GRPO shows library skills).
2. :meth:`Learner.prepare` ``(batch, ctx)``: optional extra work before any update,
   e.g. OPID's hindsight analysis and teacher re-scoring through ``ctx.score`` (the old
   policy scoring the batch's responses under other prompts, batched, no gradient).
   It stores per-sample tensors in ``batch.extras`` and JSON-able notes in
   ``batch.annotations``.
3. :meth:`Learner.advantages` ``(batch, ctx) -> [N, L]``: per response token.
4. :meth:`Learner.loss` ``(inputs) -> LossOutput`` once per micro-batch, with the
   current log-probs (with gradient) and the matching rows of everything above.

The loop never looks at a learner's name; everything a learner needs reaches it
through :class:`StepBatch`, :class:`StepContext` and :class:`LossInputs`. The math
lives in pure functions (``learners/common.py``); a learner file composes them.

Configuration: each learner has a frozen ``Config`` dataclass that extends
:class:`LearnerConfig` (the policy-loss settings every learner shares, spec §1).
:meth:`Learner.default_config` gives its defaults for one benchmark (e.g. WebShop
normalises A_ep by the mean only); presets and ``--set learner.<field>=...`` override
them (:mod:`opid_gym.config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Sequence

from opid_gym.benchmark import Benchmark
from opid_gym.history import PromptTemplate
from opid_gym.rollout import PromptHook
from opid_gym.types import Message, Trajectory

if TYPE_CHECKING:
    import torch


# ------------------------------------------------------------------- configuration
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("low_var_kl", "kl", "abs", "mse")


@dataclass(frozen=True)
class LearnerConfig:
    """Settings every learner shares (algorithms spec §1). Subclass it to add fields.

    Attributes:
        adv_norm: ``mean_std_norm`` (A=(S−mean)/(std+1e-6)) or ``mean_norm`` (A=S−mean).
        pooling: group statistics over every step sample (``step``, the reference code)
            or one value per trajectory (``trajectory``).
        invalid_penalty: c_inv in S_i = R(τ) − c_inv·1[invalid]; defaults to the
            benchmark's value.
        clip_eps: PPO clip ε.
        dual_clip: dual-clip bound c for negative advantages (None: off).
        kl_coef: β_kl, weight of the k3 KL to the reference (initial) policy; 0 skips
            the reference model entirely.
        kl_clamp: k3 is clamped to [−kl_clamp, kl_clamp].
        entropy_coef: β_ent, weight of the entropy bonus; 0 skips computing entropies.
        gamma: discount of the per-step returns in the batch (OPID's analyzer, GiGPO).
        loss_agg_mode: how per-token losses become one number (reference
            ``loss_agg_mode``): ``token-mean`` (default), ``seq-mean-token-sum``,
            ``seq-mean-token-mean`` or ``seq-mean-token-sum-norm`` (Dr. GRPO).
        clip_eps_low / clip_eps_high: asymmetric PPO clip, ratio clipped to
            [1 − low, 1 + high] (reference ``clip_ratio_low``/``clip_ratio_high``; DAPO's
            clip-higher raises ``clip_eps_high``); null: ``clip_eps``.
        kl_estimator: the per-token KL to π_ref (reference ``kl_loss_type``): ``low_var_kl``
            (k3, default, clamped to ±kl_clamp), ``kl`` (k1), ``abs``, ``mse`` (k2).
    """

    adv_norm: Literal["mean_std_norm", "mean_norm"] = "mean_std_norm"
    pooling: Literal["step", "trajectory"] = "step"
    invalid_penalty: float = 0.1
    clip_eps: float = 0.2
    dual_clip: float | None = 3.0
    kl_coef: float = 0.01
    kl_clamp: float = 10.0
    entropy_coef: float = 0.001
    gamma: float = 0.95
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                           "seq-mean-token-sum-norm"] = "token-mean"
    clip_eps_low: float | None = None
    clip_eps_high: float | None = None
    kl_estimator: Literal["low_var_kl", "kl", "abs", "mse"] = "low_var_kl"

    def __post_init__(self) -> None:
        _check(0 < self.clip_eps < 1, f"clip_eps must be in (0, 1), got {self.clip_eps}")
        _check(self.clip_eps_low is None or 0 <= self.clip_eps_low < 1,
               f"clip_eps_low must be in [0, 1) or null, got {self.clip_eps_low}")
        _check(self.clip_eps_high is None or self.clip_eps_high >= 0,
               f"clip_eps_high must be >= 0 or null, got {self.clip_eps_high}")
        _check(self.loss_agg_mode in LOSS_AGG_MODES,
               f"loss_agg_mode must be one of {', '.join(LOSS_AGG_MODES)}, got {self.loss_agg_mode!r}")
        _check(self.kl_estimator in KL_ESTIMATORS,
               f"kl_estimator must be one of {', '.join(KL_ESTIMATORS)}, got {self.kl_estimator!r}")
        _check(self.dual_clip is None or self.dual_clip > 1, f"dual_clip must be > 1 or null, got {self.dual_clip}")
        _check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")
        _check(self.entropy_coef >= 0, f"entropy_coef must be >= 0, got {self.entropy_coef}")
        _check(self.kl_clamp > 0, f"kl_clamp must be > 0, got {self.kl_clamp}")
        _check(self.invalid_penalty >= 0, f"invalid_penalty must be >= 0, got {self.invalid_penalty}")
        _check(0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}")


class ConfigError(ValueError):
    """An invalid configuration value (reported before any work starts)."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    # algorithms spec §1 and §2 table, per environment family (TextEnv.family)
    "alfworld": {},
    "webshop": {"adv_norm": "mean_norm"},
    "sciworld": {"adv_norm": "mean_norm"},  # run_sciworld_opid_guide.sh: OPID_MODE=mean_norm
    "searchqa": {"kl_coef": 0.001, "entropy_coef": 0.0},
}
"""Per-family overrides of :class:`LearnerConfig`'s defaults (unknown families: none)."""


# ------------------------------------------------------------------------ batches
@dataclass
class StepBatch:
    """One training step's data: one sample per (trajectory, step), N samples.

    Built by :func:`build_step_batch` from the step's trajectories (episodes that
    ended in an environment error are left out). Per-token tensors are [N, L] with
    L the longest response; padding is 0 and ``mask`` 0.

    Attributes:
        prompt_ids: N lists, the exact prompt tokens the policy saw (template applied).
        response_ids: N lists, the sampled response tokens.
        mask: [N, L] float, 1 on response tokens.
        sampler_logp: [N, L] the sampler's log-probs (None if the agent gave none).
        old_logp: [N, L] log π_old of the response tokens (filled by the loop before
            ``prepare``: recomputed by the trainer, or the sampler's).
        ref_logp: [N, L] log π_ref, or None when no learner term needs it.
        rewards: [N] the environment reward r_t of the step.
        returns: [N] discounted return G_t = Σ_k γ^k r_{t+k} (unpenalised).
        episode_return: [N] R(τ) of the sample's trajectory.
        invalid: [N] bool, the response broke the action format.
        won: [N] bool, the sample's trajectory succeeded.
        group_index / traj_index / step_index: [N] long. Groups and trajectories are
            numbered 0.. in the order of ``trajectories``.
        traj_length: [N] long, number of steps of the sample's trajectory.
        trajectories: the trajectories, ``trajectories[traj_index[i]]``.
        messages: N prompts as chat messages (what the policy saw, after any hook).
        prompt_text: N strings, the last user message (the per-step prompt h_t).
        observation: N strings, the environment text answered at that step.
        response_text: N strings.
        task / task_type: N strings.
        extras: per-sample tensors a learner's ``prepare`` stores (first dim N, e.g.
            ``teacher_logp`` [N, L]); the loop slices them per micro-batch into
            :attr:`LossInputs.extras`.
        annotations: N dicts of JSON-able notes saved with the step's rollouts
            (``rollouts/step_NNNNNN.jsonl``), e.g. ``{"routed_skill": "...",
            "skill_adv": [...]}``.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    mask: torch.Tensor
    rewards: torch.Tensor
    returns: torch.Tensor
    episode_return: torch.Tensor
    invalid: torch.Tensor
    won: torch.Tensor
    group_index: torch.Tensor
    traj_index: torch.Tensor
    step_index: torch.Tensor
    traj_length: torch.Tensor
    trajectories: list[Trajectory]
    messages: list[list[Message]]
    prompt_text: list[str]
    observation: list[str]
    response_text: list[str]
    task: list[str]
    task_type: list[str]
    sampler_logp: torch.Tensor | None = None
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def num_groups(self) -> int:
        return int(self.group_index.max().item()) + 1 if len(self) else 0

    def annotate(self, i: int, **notes: Any) -> None:
        """Attach JSON-able notes to sample ``i`` (saved with the rollouts)."""
        self.annotations[i].update(notes)


def pad_2d(rows: Sequence[Sequence[float]], width: int | None = None, dtype: Any = None) -> torch.Tensor:
    """Right-pad ragged rows with 0 into an [N, width] tensor (width = longest row)."""
    import torch

    width = max((len(r) for r in rows), default=0) if width is None else width
    out = torch.zeros(len(rows), width, dtype=dtype or torch.float32)
    for i, r in enumerate(rows):
        n = min(len(r), width)
        if n:
            out[i, :n] = torch.as_tensor(list(r[:n]), dtype=out.dtype)
    return out


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """``G_t = r_t + γ·G_{t+1}`` for one trajectory's step rewards (G_T = 0)."""
    out = [0.0] * len(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def build_step_batch(trajectories: Sequence[Trajectory], *, gamma: float = 0.95) -> StepBatch:
    """Turn a step's trajectories into step samples (one per (trajectory, step)).

    Left out: trajectories that ended in an environment error (``error`` set), and
    steps without response tokens (an agent that is not a model, or an empty
    response: nothing to train on). Group and trajectory indices count the kept
    trajectories, in the order given.
    """
    import torch

    kept = [t for t in trajectories if t.error is None]
    groups: dict[str, int] = {}
    cols: dict[str, list[Any]] = {k: [] for k in (
        "prompt_ids", "response_ids", "logp", "rewards", "returns", "episode_return", "invalid", "won",
        "group_index", "traj_index", "step_index", "traj_length", "messages", "prompt_text",
        "observation", "response_text", "task", "task_type")}
    has_sampler_logp = True
    for ti, traj in enumerate(kept):
        gi = groups.setdefault(traj.group_id, len(groups))
        rets = discounted_returns([s.reward for s in traj.steps], gamma)
        for step, ret in zip(traj.steps, rets):
            if not step.response_token_ids or step.prompt_token_ids is None:
                continue
            has_sampler_logp &= step.response_logprobs is not None
            for key, value in (
                ("prompt_ids", list(step.prompt_token_ids)), ("response_ids", list(step.response_token_ids)),
                ("logp", step.response_logprobs or []), ("rewards", step.reward), ("returns", ret),
                ("episode_return", traj.total_reward), ("invalid", not step.valid), ("won", traj.won),
                ("group_index", gi), ("traj_index", ti), ("step_index", step.index),
                ("traj_length", traj.length), ("messages", step.prompt), ("prompt_text", step.prompt_text),
                ("observation", step.observation), ("response_text", step.response),
                ("task", traj.task), ("task_type", traj.task_type),
            ):
                cols[key].append(value)
    lengths = [len(r) for r in cols["response_ids"]]
    width = max(lengths, default=0)
    mask = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1.0
    f32, i64 = torch.float32, torch.long
    return StepBatch(
        prompt_ids=cols["prompt_ids"], response_ids=cols["response_ids"], mask=mask,
        rewards=torch.tensor(cols["rewards"], dtype=f32), returns=torch.tensor(cols["returns"], dtype=f32),
        episode_return=torch.tensor(cols["episode_return"], dtype=f32),
        invalid=torch.tensor(cols["invalid"], dtype=torch.bool), won=torch.tensor(cols["won"], dtype=torch.bool),
        group_index=torch.tensor(cols["group_index"], dtype=i64), traj_index=torch.tensor(cols["traj_index"], dtype=i64),
        step_index=torch.tensor(cols["step_index"], dtype=i64), traj_length=torch.tensor(cols["traj_length"], dtype=i64),
        trajectories=kept, messages=cols["messages"], prompt_text=cols["prompt_text"],
        observation=cols["observation"], response_text=cols["response_text"], task=cols["task"],
        task_type=cols["task_type"],
        sampler_logp=pad_2d(cols["logp"], width) if has_sampler_logp and lengths else None,
        annotations=[{} for _ in lengths],
    )


# ---------------------------------------------------------------- step context
@dataclass
class RunInfo:
    """What a learner may know about the run it is part of (given at construction).

    Attributes:
        benchmark: the benchmark protocol (training env, step limit, c_inv, ...).
        family: the environment family (``alfworld``, ``webshop``, ``searchqa``...).
        template: the family's prompt template (anchors for skill injection).
        action_format: the family's response format.
        run_dir: the run folder (caches such as analyzer answers go here); None in tests.
        seed: the run seed.
        total_steps: the number of training steps of the run.
        max_prompt_tokens: prompts are left-truncated to this many tokens.
    """

    benchmark: Benchmark
    family: str
    template: PromptTemplate
    action_format: str
    run_dir: Path | None = None
    seed: int = 0
    total_steps: int = 1
    max_prompt_tokens: int | None = None


@dataclass
class StepContext:
    """Given to :meth:`Learner.prepare` and :meth:`Learner.advantages` each step.

    Attributes:
        step: the current training step (0-based), for schedules such as RLSD's λ.
        run: the :class:`RunInfo`.
        score_messages: ``(messages, rows) -> [len(rows), L]``: log π_old of the
            batch's response tokens ``rows`` (default: all) under alternative prompts
            given as chat messages (one per row, chat template applied and
            left-truncated like the policy's prompts). No gradient; aligned with the
            batch's per-token tensors (same L, 0 at padding).
        score_ids: the same with prompts given as token ids.
        log: a metrics sink: ``log({"opid/skill_adv_mean": 0.01})`` ends up in the
            step's metrics line.
        token_strings: token ids → one decoded string per token (for annotations such
            as ``response_tokens`` in the trajectory viewer).
        encode_messages: chat messages → prompt token ids (template applied,
            left-truncated to the prompt limit), as the policy would see them.
        encode_chat: the same, returning ``(ids, truncated)``: whether the prompt was
            left-truncated (learners that build prompts count truncations).
        old_logp_source: where ``batch.old_logp`` came from: ``recompute`` (the same
            scorer as ``score_ids`` on ``batch.prompt_ids``, so a learner comparing
            its own scores with it compares like with like) or ``sampler`` (the
            rollout engine's log-probs).
        generate: ``(prompts, params, seeds) -> list[Generation]``: sample from the
            current policy (the rollout engine), for learners that let the policy
            itself write text (e.g. OPID's ``analyzer=policy``); None when unavailable.
    """

    step: int
    run: RunInfo
    score_messages: Callable[[Sequence[list[Message]], Sequence[int] | None], torch.Tensor]
    score_ids: Callable[[Sequence[Sequence[int]], Sequence[int] | None], torch.Tensor]
    log: Callable[[dict[str, float]], None]
    token_strings: Callable[[Sequence[int]], list[str]] = lambda ids: [str(i) for i in ids]
    encode_messages: Callable[[list[Message]], list[int]] | None = None
    encode_chat: Callable[[list[Message]], tuple[list[int], bool]] | None = None
    old_logp_source: Literal["recompute", "sampler"] = "recompute"
    generate: Callable[..., list[Any]] | None = None


@dataclass
class LossInputs:
    """One micro-batch of n samples, as the learner's :meth:`Learner.loss` sees it.

    Attributes:
        logp: [n, l] log πθ of the response tokens, WITH gradient.
        old_logp: [n, l] log π_old. ref_logp: [n, l] or None. entropy: [n, l] or None.
        mask: [n, l]. advantages: [n, l] (from :meth:`Learner.advantages`).
        extras: the rows of ``batch.extras`` (per-token ones cut to l).
        num_tokens: valid tokens of the whole mini-batch: divide sums by it
            (:meth:`token_mean`) so micro-batch losses add up to the mini-batch's
            token mean.
        step: the training step.
        num_seqs: rows of the whole mini-batch (the ``seq-mean-*`` loss aggregations
            divide by it; None: this micro-batch's rows).
        norm_length: the constant divisor of ``seq-mean-token-sum-norm`` (the run's
            response-token limit; None: this micro-batch's width).
    """

    logp: torch.Tensor
    old_logp: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    num_tokens: float
    ref_logp: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    step: int = 0
    num_seqs: float | None = None
    norm_length: float | None = None

    def token_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Σ(x·mask) / num_tokens (see class docstring)."""
        return (x * self.mask).sum() / max(float(self.num_tokens), 1.0)


@dataclass
class LossOutput:
    """A learner's loss for one micro-batch.

    ``metrics`` are token-mean contributions like the loss itself (computed with
    :meth:`LossInputs.token_mean`), so the trainer sums them over micro-batches and
    averages them over mini-batches. Use keys such as ``loss/pg``, ``loss/kl``,
    ``kl``, ``clip_frac``, ``entropy``.
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------ learner
class Learner:
    """Base class of every learner. Subclasses set the class attributes and ``Config``.

    Class attributes:
        name: the registry name (``grpo``).
        description: one line for ``opid-bench list learners``.
        paper: where the method comes from (arXiv id or URL).
        Config: the learner's frozen config dataclass (a :class:`LearnerConfig` subclass).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Config: ClassVar[type[LearnerConfig]] = LearnerConfig
    run_defaults: ClassVar[dict[str, Any]] = {}
    """Run-config defaults this learner needs (dotted keys; presets and --set still win)."""

    def __init__(self, config: LearnerConfig, run: RunInfo) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.run = run

    # -------------------------------------------------------------- configuration
    @classmethod
    def default_config(cls, benchmark: Benchmark, family: str) -> LearnerConfig:
        """Defaults for one benchmark: the family's loss defaults and the benchmark's c_inv.

        Override to add per-benchmark defaults of your own fields (call super()).
        """
        valid = {f.name for f in dataclasses.fields(cls.Config)}
        values = {k: v for k, v in LOSS_DEFAULTS.get(family, {}).items() if k in valid}
        return cls.Config(**{**values, "invalid_penalty": benchmark.invalid_penalty})

    # --------------------------------------------------------------- requirements
    @property
    def needs_ref_logp(self) -> bool:
        """Whether the loss reads ``ref_logp`` (the reference model is kept only then)."""
        return self.config.kl_coef > 0

    @property
    def needs_expert(self) -> bool:
        """Whether training rollouts record the environment expert's action at every step
        (``Step.expert_action``; environments without an expert record None). Default: no."""
        return False

    @property
    def needs_entropy(self) -> bool:
        """Whether the loss reads ``entropy`` (entropies are computed only then)."""
        return self.config.entropy_coef > 0

    @property
    def needs_old_logp(self) -> bool:
        """Whether the loss reads ``old_logp`` (π_old is scored only then; else it is 0)."""
        return True

    # ---------------------------------------------------------------------- hooks
    def rollout_prompt_hook(self) -> PromptHook | None:
        """A rewrite of the student's prompts in training rollouts (None: plain prompts)."""
        return None

    def rollout_agent(self, policy_agent: Any, policy: Any) -> Any:
        """The agent training rollouts run (default: ``policy_agent``, the policy itself).

        A learner that learns from another agent's behaviour (``sft``: demonstrations)
        returns that agent. ``policy`` tokenises (``encode_chat``, ``encode_response``) so
        the other agent's steps carry the policy's prompt and response token ids.
        """
        return policy_agent

    def eval_prompt_hook(self) -> PromptHook | None:
        """A rewrite of the prompts in evaluations (None: the benchmark's plain prompts)."""
        return None

    def prepare(self, batch: StepBatch, ctx: StepContext) -> None:
        """Extra work before the update (extra scoring passes); default: nothing."""

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        """Per-token advantages, [N, L] (0 at padding)."""
        raise NotImplementedError

    def loss(self, inputs: LossInputs) -> LossOutput:
        """The loss of one micro-batch (see :class:`LossInputs`)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Learner state that must survive a resume (JSON-able); default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
