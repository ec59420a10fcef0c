"""The math every learner shares, as pure functions (algorithms spec §1).

Shapes: ``N`` step samples (one per (trajectory, step)), ``L`` the longest response in
tokens. ``mask`` is 1.0 on real response tokens and 0.0 on padding; every per-token
result is 0 at padding. Nothing here touches a model, a batch object or a config: a
learner file composes these functions, and the tests check each against values
computed by hand.

References: the episode score and the group-relative advantage follow GRPO
(DeepSeekMath, arXiv 2402.03300, §4.1.2 "outcome supervision") applied to step samples
as verl-agent does; the policy loss is PPO's clipped surrogate (arXiv 1707.06347, eq. 7)
with the dual clip of arXiv 1912.09729 (eq. 5); the KL estimator is Schulman's "k3"
(http://joschu.net/blog/kl-approx.html).

Precision: group statistics are taken in float64, so a group whose scores are all
equal gets an advantage of exactly 0 at any group size. The reference code takes them
in float32 and divides its rounding residue by ``std + 1e-6`` (8 × 9.9 gives −0.47
each there); this is a deliberate difference (docs/protocols.md, "Learners").
"""

from __future__ import annotations

from typing import Literal

import torch

from opid_gym.learner import LearnerConfig, LossInputs, LossOutput
from opid_gym.learner import discounted_returns  # noqa: F401  (pure; lives in the core, which builds batches)

AdvNorm = Literal["mean_std_norm", "mean_norm"]
Pooling = Literal["step", "trajectory"]

STD_EPS = 1e-6
"""Added to the group's standard deviation before dividing (spec §1)."""


# --------------------------------------------------------------------- scores
def episode_scores(episode_return: torch.Tensor, invalid: torch.Tensor, penalty: float) -> torch.Tensor:
    """``S_i = R(τ_i) − c_inv · 1[step i was invalid]``.

    Args:
        episode_return: [N] R(τ) of the trajectory each step sample belongs to.
        invalid: [N] bool, the step's response broke the action format.
        penalty: c_inv (0.1 ALFWorld/WebShop, 0.01 search QA).

    Returns:
        [N] float64 scores (group statistics are taken in float64, module docstring).
    """
    return episode_return.to(torch.float64) - penalty * invalid.to(torch.float64)


# ----------------------------------------------------------------- advantages
def group_advantages(
    scores: torch.Tensor,
    group_index: torch.Tensor,
    *,
    norm: AdvNorm = "mean_std_norm",
    pooling: Pooling = "step",
    traj_index: torch.Tensor | None = None,
    eps: float = STD_EPS,
) -> torch.Tensor:
    """Group-relative advantage of every step sample.

    ``A_i = (S_i − mean_g) / (std_g + eps)`` (``mean_std_norm``) or ``S_i − mean_g``
    (``mean_norm``), where g is the sample's group. The statistics are taken over

    * ``pooling="step"`` (the reference code): every step sample of the group, so long
      trajectories weigh more;
    * ``pooling="trajectory"``: one value per trajectory of the group, the mean score
      of its step samples (needs ``traj_index``).

    ``std`` is the unbiased (Bessel-corrected) standard deviation, as ``torch.std``.
    A group with a single pooled value gets mean 0 and std 1 (its advantage is its own
    score), as in the reference code; a group whose pooled values are all equal gets
    exactly 0 (statistics in float64 and an equal group's mean taken as its value, so
    no rounding residue is divided by ``std + eps``; the reference's float32 statistics
    give e.g. −0.47 for 8 × 9.9).

    Args:
        scores: [N] float, S_i.
        group_index: [N] long, the group of each sample.
        traj_index: [N] long, the trajectory of each sample (``pooling="trajectory"``).

    Returns:
        [N] float32 advantages (detached; computed in float64).
    """
    if norm not in ("mean_std_norm", "mean_norm"):
        raise ValueError(f"unknown advantage normalisation {norm!r}")
    if pooling not in ("step", "trajectory"):
        raise ValueError(f"unknown pooling {pooling!r}")
    if pooling == "trajectory" and traj_index is None:
        raise ValueError("pooling='trajectory' needs traj_index")
    scores = scores.detach().to(torch.float64)
    adv = torch.zeros_like(scores)
    for g in torch.unique(group_index):
        rows = group_index == g
        values = scores[rows]
        if pooling == "trajectory":
            assert traj_index is not None
            trajs = traj_index[rows]
            values = torch.stack([values[trajs == t].mean() for t in torch.unique(trajs)])
        mean, std = group_stats(values)
        centred = scores[rows] - mean
        adv[rows] = centred / (std + eps) if norm == "mean_std_norm" else centred
    return adv.to(torch.float32)


def group_stats(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, unbiased std) of one group's pooled values, in float64.

    One value: (0, 1), as the reference code. All values equal: (that value, 0), so the
    group's centred scores are exactly 0 whatever its size (a float mean of equal
    values can round away from them).

    Args:
        values: [n] float, n >= 1.
    """
    values = values.to(torch.float64)
    if values.numel() == 1:
        return values.new_tensor(0.0), values.new_tensor(1.0)
    if bool((values == values[0]).all()):
        return values[0], values.new_tensor(0.0)
    return values.mean(), values.std()


def token_advantages(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample advantage to its response tokens: ``A_{i,l} = A_i·m_{i,l}``.

    Args:
        adv: [N]. mask: [N, L]. Returns: [N, L].
    """
    return adv[:, None] * mask


# ---------------------------------------------------------------------- losses
def token_mean(x: torch.Tensor, mask: torch.Tensor, num_tokens: float | torch.Tensor | None = None) -> torch.Tensor:
    """Σ(x·m) / num_tokens; ``num_tokens`` defaults to Σm (at least 1).

    Passing the token count of the whole mini-batch makes the sum over its
    micro-batches equal the mini-batch's token mean ("token-mean" loss aggregation).

    Args:
        x, mask: [N, L]. Returns: a scalar.
    """
    denom = mask.sum() if num_tokens is None else num_tokens
    if not isinstance(denom, torch.Tensor):
        denom = torch.tensor(float(denom), device=x.device)
    return (x * mask).sum() / denom.clamp(min=1.0)


def ppo_dual_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    dual_clip: float | None = 3.0,
    clip_low: float | None = None,
    clip_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped surrogate with dual clip (to be minimised).

    ::

        ratio = exp(logp − old_logp)
        l1 = max(−A·ratio, −A·clip(ratio, 1−ε_low, 1+ε_high))
        l  = min(l1, −A·c)   where A < 0   (dual clip, c = ``dual_clip``)
        l  = l1              elsewhere

    The dual clip bounds the loss of a negative-advantage token whose ratio exploded
    (arXiv 1912.09729): its gradient is then zero instead of growing with the ratio.

    Args:
        logp: [N, L] log πθ (with gradient).
        old_logp: [N, L] log π_old (no gradient).
        advantages: [N, L].
        clip_eps: ε. dual_clip: c > 1, or None to disable.
        clip_low / clip_high: ε_low / ε_high (asymmetric clip, DAPO's clip-higher);
            None: ``clip_eps``.

    Returns:
        (loss [N, L], clipped [N, L] float: the ε-clip was active, dual_clipped [N, L]
        float: the dual clip was active). Not masked: combine with :func:`token_mean`.
    """
    ratio = torch.exp(logp - old_logp)
    surr1 = -advantages * ratio
    low = clip_eps if clip_low is None else clip_low
    high = clip_eps if clip_high is None else clip_high
    surr2 = -advantages * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    l1 = torch.maximum(surr1, surr2)
    clipped = (surr2 > surr1).float()
    if dual_clip is None:
        return l1, clipped, torch.zeros_like(clipped)
    if dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    bound = -advantages * dual_clip
    l2 = torch.minimum(l1, bound)
    negative = advantages < 0
    dual_clipped = (negative & (l1 > bound)).float()
    return torch.where(negative, l2, l1), clipped, dual_clipped


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor, *, clamp: float = 10.0) -> torch.Tensor:
    """Per-token k3 estimator of KL(πθ‖π_ref), clamped to [−clamp, clamp].

    ``k3 = exp(ref − logp) − (ref − logp) − 1`` (≥ 0, unbiased for the KL under
    samples from πθ, low variance). The log-ratio is first clamped to [−20, 20] so the
    exponential stays finite and the clamp's zero gradient never meets an ``inf``.

    Args:
        logp: [N, L] log πθ (with gradient). ref_logp: [N, L] log π_ref.

    Returns:
        [N, L] (not masked).
    """
    d = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.clamp(torch.exp(d) - d - 1.0, -clamp, clamp)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "low_var_kl", *,
               clamp: float = 10.0) -> torch.Tensor:
    """Per-token estimate of KL(πθ‖π_ref) from sampled tokens (reference ``kl_loss_type``).

    With ``d = logp − ref_logp``:

    * ``low_var_kl`` (k3): :func:`k3_kl`, ``exp(−d) + d − 1`` clamped to ±``clamp``;
    * ``kl`` (k1): ``d``;
    * ``abs``: ``|d|``;
    * ``mse`` (k2): ``d² / 2``.

    Args:
        logp: [N, L] log πθ (with gradient). ref_logp: [N, L] log π_ref.

    Returns:
        [N, L] (not masked).
    """
    if estimator == "low_var_kl":
        return k3_kl(logp, ref_logp, clamp=clamp)
    d = logp - ref_logp
    if estimator == "kl":
        return d
    if estimator == "abs":
        return d.abs()
    if estimator == "mse":
        return 0.5 * d.square()
    raise ValueError(f"unknown KL estimator {estimator!r} (low_var_kl, kl, abs, mse)")


def aggregate_loss(x: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", *,
                   num_tokens: float | None = None, num_seqs: float | None = None,
                   norm_length: float | None = None) -> torch.Tensor:
    """A micro-batch's share of the mini-batch loss of per-token values ``x`` (reference
    ``agg_loss``), so that summing it over the micro-batches gives the mini-batch's value.

    With ``s_i = Σ_l x_{i,l}·m_{i,l}`` (row sums), ``T`` the mini-batch's valid tokens
    (``num_tokens``), ``S`` its rows (``num_seqs``) and ``Lmax`` the response-token limit
    (``norm_length``):

    * ``token-mean``: ``Σ_i s_i / T``
    * ``seq-mean-token-sum``: ``Σ_i s_i / S``
    * ``seq-mean-token-mean``: ``Σ_i (s_i / Σ_l m_{i,l}) / S``
    * ``seq-mean-token-sum-norm``: ``Σ_i s_i / Lmax`` (Dr. GRPO's constant normaliser)

    Unset ``T``, ``S``, ``Lmax`` default to this micro-batch's tokens, rows and width.
    Rows without valid tokens count as 0.

    Args:
        x, mask: [N, L]. Returns: a scalar.
    """
    rows = (x * mask).sum(dim=-1)  # [N]
    if mode == "token-mean":
        return token_mean(x, mask, num_tokens)
    seqs = float(mask.shape[0] if num_seqs is None else num_seqs)
    if mode == "seq-mean-token-sum":
        return rows.sum() / max(seqs, 1.0)
    if mode == "seq-mean-token-mean":
        return (rows / mask.sum(dim=-1).clamp(min=1.0)).sum() / max(seqs, 1.0)
    if mode == "seq-mean-token-sum-norm":
        length = float(mask.shape[-1] if norm_length is None else norm_length)
        return rows.sum() / max(length, 1.0)
    raise ValueError(f"unknown loss_agg_mode {mode!r} (token-mean, seq-mean-token-sum, seq-mean-token-mean, "
                     "seq-mean-token-sum-norm)")


def aggregate(inputs: LossInputs, x: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """:func:`aggregate_loss` of ``x`` over a micro-batch's :class:`LossInputs` (mini-batch divisors)."""
    if mode == "token-mean":
        return inputs.token_mean(x)
    return aggregate_loss(x, inputs.mask, mode, num_tokens=inputs.num_tokens, num_seqs=inputs.num_seqs,
                          norm_length=inputs.norm_length)


# ------------------------------------------------------------------ OPID terms
def teacher_advantage(delta: torch.Tensor, mask: torch.Tensor, active: torch.Tensor, weight: torch.Tensor, *,
                      normalize: bool = False, clip: float | None = None, eps: float = STD_EPS) -> torch.Tensor:
    """OPID's teacher (skill) advantage of one teacher kind (episode or step skill), detached.

    ``A_T = λ · post(Δ · m · a)``, with ``Δ = ℓ_T − ℓ_old`` per token, ``m`` the response
    mask and ``a`` the rows this teacher scored. ``post`` is the identity by default
    (reference defaults ``normalize_teacher_adv: False``, ``clip_teacher_adv: null``); the
    reference's options, in its order:

    * ``normalize``: over the valid tokens of the active rows, ``(x − mean) / (std + eps)``
      with the population std (``unbiased=False``), or ``x − mean`` when ``std <= eps``;
      other tokens stay 0;
    * ``clip``: clamp to [−clip, clip].

    Args:
        delta: [N, L] ℓ_T − ℓ_old (values of inactive rows are ignored).
        mask: [N, L]. active: [N] bool. weight: [N] λ of each row's route.

    Returns:
        [N, L], 0 at padding and on inactive rows.
    """
    rows = active.to(mask.dtype)[:, None]
    if not normalize and clip is None:
        return (weight[:, None] * delta * mask * rows).detach()
    x = delta * mask * rows
    if normalize:
        valid = (mask > 0) & (rows > 0)
        if bool(valid.any()):
            values = x[valid]
            mean, std = values.mean(), values.std(unbiased=False)
            x = torch.where(valid, (x - mean) / (std + eps) if float(std) > eps else x - mean, x)
    if clip is not None:
        x = torch.clamp(x, -clip, clip)
    return (weight[:, None] * x).detach()


def opd_loss(logp: torch.Tensor, old_logp: torch.Tensor, teacher_logp: torch.Tensor, *, mode: str = "delta",
             clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token auxiliary on-policy distillation loss of OPID (reference ``compute_opd_loss``).

    With ``Δ = sg(ℓ_T − ℓ_old)``:

    * ``delta``: ``w = clip(Δ)``, loss ``−w · log πθ`` (gradient ``−w`` per token);
    * ``importance``: ``w = clip(Δ · exp(log πθ − ℓ_old))``, loss ``−w`` (gradient through
      the ratio, zero where the clip is active).

    ``clip`` None: no clamp, else [−clip, clip].

    Args:
        logp: [N, L] log πθ (with gradient). old_logp / teacher_logp: [N, L].

    Returns:
        (loss [N, L], |w| [N, L] detached); not masked: aggregate with the rows' OPD mask.
    """
    delta = (teacher_logp - old_logp).detach()
    if mode == "delta":
        w = delta if clip is None else torch.clamp(delta, -clip, clip)
        return -w * logp, w.abs().detach()
    if mode == "importance":
        w = delta * torch.exp(logp - old_logp.detach())
        if clip is not None:
            w = torch.clamp(w, -clip, clip)
        return -w, w.abs().detach()
    raise ValueError(f"unknown OPD weight mode {mode!r} (delta, importance)")


# ------------------------------------------------------------ the composed loss
def policy_loss(inputs: LossInputs, config: LearnerConfig, *, pg: bool = True) -> LossOutput:
    """The spec §1 loss of one micro-batch: ``agg(l) − β_ent·agg(H) + β_kl·agg(kl)``.

    ``l`` is :func:`ppo_dual_clip_loss` on ``inputs.advantages`` (ε_low/ε_high from
    ``clip_eps_low``/``clip_eps_high``), ``kl`` is :func:`kl_penalty` with
    ``config.kl_estimator``, and ``agg`` is :func:`aggregate` with
    ``config.loss_agg_mode`` (default ``token-mean``: every mean divides by the
    mini-batch's token count ``inputs.num_tokens``). ``pg=False`` drops the
    policy-gradient term and keeps the KL and entropy terms (OPSD as a baseline).
    Learners that add a term call this and add to ``loss`` and ``metrics``.

    Metrics: ``loss/pg``, ``loss/kl``, ``loss/entropy`` (the weighted terms as they
    enter the loss), ``kl`` (the aggregated estimator), ``entropy``, and token means
    ``clip_frac``, ``dual_clip_frac``, ``ratio_mean``.
    """
    mean = inputs.token_mean
    mode = config.loss_agg_mode
    loss = inputs.logp.new_zeros(())
    metrics: dict[str, float] = {}
    if pg:
        per_token, clipped, dual = ppo_dual_clip_loss(
            inputs.logp, inputs.old_logp, inputs.advantages,
            clip_eps=config.clip_eps, dual_clip=config.dual_clip,
            clip_low=config.clip_eps_low, clip_high=config.clip_eps_high,
        )
        pg_loss = aggregate(inputs, per_token, mode)
        loss = loss + pg_loss
        metrics["loss/pg"] = float(pg_loss.detach())
        metrics["clip_frac"] = float(mean(clipped))
        metrics["dual_clip_frac"] = float(mean(dual))
        metrics["ratio_mean"] = float(mean(torch.exp(inputs.logp.detach() - inputs.old_logp)))
    if config.kl_coef > 0:
        if inputs.ref_logp is None:
            raise ValueError("kl_coef > 0 but the loop gave no ref_logp")
        kl = aggregate(inputs, kl_penalty(inputs.logp, inputs.ref_logp, config.kl_estimator, clamp=config.kl_clamp),
                       mode)
        loss = loss + config.kl_coef * kl
        metrics["kl"] = float(kl.detach())
        metrics["loss/kl"] = float(config.kl_coef * kl.detach())
    if config.entropy_coef > 0:
        if inputs.entropy is None:
            raise ValueError("entropy_coef > 0 but the loop gave no entropy")
        ent = aggregate(inputs, inputs.entropy, mode)
        loss = loss - config.entropy_coef * ent
        metrics["entropy"] = float(ent.detach())
        metrics["loss/entropy"] = float(-config.entropy_coef * ent.detach())
    metrics["loss/total"] = float(loss.detach())
    return LossOutput(loss, metrics)
