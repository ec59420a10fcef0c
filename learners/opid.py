"""OPID: on-policy skill distillation from hindsight analyses (arXiv 2606.26790; spec §2).

Each training step, after the rollout and before any update:

1. **Hindsight analysis.** Every finished trajectory τ goes to an analyzer
   (:mod:`learners.skills.analyzer`) which returns an episode summary, one episode skill
   and up to K step skills ``{t: advice}``; the keys are the critical steps C_τ.
2. **Routing** (:func:`route_step`). ``critical_first`` (default): step t uses its step
   skill if t ∈ C_τ, else the episode skill. ``additive``: at critical steps both
   prompts are scored and both advantages added. ``episode_only``: the episode skill
   at every step. A route's weight λ scales its term; a zero weight skips its scoring.
3. **Injection** (:mod:`learners.skills.inject`). h̃_t = the exact prompt the policy
   saw plus one headed block (heading, a one-line instruction, the skill; blank lines
   around it): the episode skill after the task line (after the observation's task
   line where the observation restates the task, as at ALFWorld's first step), a step
   skill before the final instruction to act; same chat template, left-truncated.
4. **Teacher re-scoring.** π_old scores the SAME sampled response tokens under h̃_t
   (no gradient, batched): ℓ_skill. ℓ_old is the same scorer under h_t (the loop's
   ``old_logp`` when it was recomputed, else scored here).
5. **Skill advantage** per token, detached, unclipped, unnormalised, no baseline::

       A_skill_{i,l} = Σ_routes λ_route · (ℓ_skill − ℓ_old)_{i,l} · m_{i,l}

6. **Final advantage** ``A_OPID = A_ep + A_skill`` (A_ep exactly as GRPO) and GRPO's
   PPO dual-clip loss. A trajectory whose analysis failed gets A_skill = 0 (counted in
   ``opid/analyzer_failures``). Skills exist only in training: evaluation is the plain
   policy (no prompt hook, no analyzer).

Why (paper, App. A): at θ = θ_old the gradient of the surrogate with advantage
``ℓ_T − ℓ_old`` equals that of the reverse KL to the skill-conditioned self-teacher π_T;
in groups where every trajectory has the same outcome A_ep is 0 and this term is the
only learning signal (``opid/zero_adv_group_frac`` counts such groups).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from learners.common import aggregate, opd_loss, policy_loss, teacher_advantage
from learners.grpo import GRPO
from learners.skills.analyzer import Analysis, AnalysisResult, Analyzer, AnalyzerConfigError, AnalyzerSettings
from learners.skills.inject import inject_skill
from opid_gym.benchmark import Benchmark
from opid_gym.family import EnvFamily
from opid_gym.learner import ConfigError, LearnerConfig, LossInputs, LossOutput, RunInfo, StepBatch, StepContext
from opid_gym.types import Message

Route = Literal["critical_first", "additive", "episode_only"]
OPD_TEACHER = "opd_teacher_logp"
"""``batch.extras`` key of the OPD loss's teacher log-probs [N, L] (only with ``opd_loss_coef > 0``)."""
OPD_ROWS = "opd_rows"
"""``batch.extras`` key of the rows the OPD loss covers [N] (1.0: a skill teacher scored the row)."""


@dataclass(frozen=True)
class OPIDConfig(LearnerConfig):
    """OPID's settings: GRPO's (:class:`LearnerConfig`, γ = 0.95 for the analyzer's G_t) plus:

    Attributes:
        analyzer: ``hindsight-rules`` (no model, deterministic), ``oracle`` (an ablation, not
            the paper's method: step skills from the environment expert's actions), ``openai`` (with
            ``analyzer_model``) or ``openai:<model>``, ``hf:<model>``, ``vllm:<model>``,
            or ``policy`` (the policy being trained writes the analyses).
        analyzer_model: the model name sent to an OpenAI-compatible endpoint.
        analyzer_base_url: the endpoint's API root (``http://127.0.0.1:8000/v1``).
        analyzer_api_key_file / analyzer_api_key_env: where the API key is read from
            (a file's first line / an environment variable's name); the key itself is
            never part of the config.
        analyzer_concurrency: requests in flight at once. analyzer_timeout: seconds per
            request. analyzer_http_retries: the client's retries of transport errors.
        analyzer_retries: re-asks, with a stricter instruction, after an unparsable answer
            (1: two attempts, as the reference).
        analyzer_temperature / analyzer_max_new_tokens: the analyzer's sampling (None: the
            endpoint's default temperature, as the reference; 4096 new tokens).
        analyzer_max_prompt_tokens: left-truncation of local analyzers' prompts.
        analyzer_max_field_chars: observations/responses longer than this are shortened
            (None, the default: shown whole, as the reference).
        analyzer_device: device of an ``hf:`` analyzer.
        max_step_skills: K (5 ALFWorld/WebShop, 2 search QA).
        route: ``critical_first`` | ``additive`` | ``episode_only`` (module docstring).
        episode_skill_weight / step_skill_weight: λ_ep / λ_step (0.001 each).
        annotate_tokens: save per-token skill advantages and token strings with the rollouts.
        normalize_teacher_adv / clip_teacher_adv: the reference's options on each
            teacher kind's advantage before its λ (:func:`learners.common.teacher_advantage`;
            defaults off / null, as the reference).
        opd_loss_coef: weight of the auxiliary OPD loss (:func:`learners.common.opd_loss`;
            0, the reference default, leaves it out). opd_loss_weight_mode: ``delta`` or
            ``importance``. opd_loss_clip: null or the clamp of its token weights.
    """

    analyzer: str = AnalyzerSettings.kind
    analyzer_model: str = AnalyzerSettings.model
    analyzer_base_url: str = AnalyzerSettings.base_url
    analyzer_api_key_file: str | None = None
    analyzer_api_key_env: str | None = None
    analyzer_concurrency: int = AnalyzerSettings.concurrency
    analyzer_timeout: float = AnalyzerSettings.timeout
    analyzer_http_retries: int = AnalyzerSettings.http_retries
    analyzer_retries: int = AnalyzerSettings.retries
    analyzer_temperature: float | None = AnalyzerSettings.temperature
    analyzer_max_new_tokens: int = AnalyzerSettings.max_new_tokens
    analyzer_max_prompt_tokens: int | None = AnalyzerSettings.max_prompt_tokens
    analyzer_max_field_chars: int | None = AnalyzerSettings.max_field_chars
    analyzer_device: str = AnalyzerSettings.device
    max_step_skills: int = AnalyzerSettings.max_step_skills
    route: Route = "critical_first"
    episode_skill_weight: float = 0.001
    step_skill_weight: float = 0.001
    annotate_tokens: bool = True
    normalize_teacher_adv: bool = False
    clip_teacher_adv: float | None = None
    opd_loss_coef: float = 0.0
    opd_loss_weight_mode: Literal["delta", "importance"] = "delta"
    opd_loss_clip: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.route in ("critical_first", "additive", "episode_only"),
             f"route must be critical_first, additive or episode_only, got {self.route!r}"),
            (self.max_step_skills >= 0, "max_step_skills must be >= 0"),
            (self.analyzer_concurrency >= 1, "analyzer_concurrency must be >= 1"),
            (self.analyzer_timeout > 0, "analyzer_timeout must be > 0"),
            (self.analyzer_retries >= 0 and self.analyzer_http_retries >= 0, "analyzer retries must be >= 0"),
            (self.analyzer_temperature is None or self.analyzer_temperature >= 0,
             "analyzer_temperature must be >= 0 (or null: the endpoint's default)"),
            (self.analyzer_max_new_tokens >= 1, "analyzer_max_new_tokens must be >= 1"),
            (self.analyzer_max_field_chars is None or self.analyzer_max_field_chars >= 20,
             "analyzer_max_field_chars must be >= 20 (or null: unclipped)"),
            (math.isfinite(self.episode_skill_weight) and math.isfinite(self.step_skill_weight),
             "skill weights must be finite numbers"),
            (self.clip_teacher_adv is None or self.clip_teacher_adv > 0, "clip_teacher_adv must be > 0 or null"),
            (self.opd_loss_coef >= 0, "opd_loss_coef must be >= 0"),
            (self.opd_loss_weight_mode in ("delta", "importance"), "opd_loss_weight_mode must be delta or importance"),
            (self.opd_loss_clip is None or self.opd_loss_clip > 0, "opd_loss_clip must be > 0 or null"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            self.analyzer_settings().validate()  # a missing API key source fails here, before any work
        except AnalyzerConfigError as exc:
            raise ConfigError(str(exc)) from None

    def analyzer_settings(self, seed: int = 0) -> AnalyzerSettings:
        return AnalyzerSettings(
            kind=self.analyzer, model=self.analyzer_model, base_url=self.analyzer_base_url,
            api_key_file=self.analyzer_api_key_file, api_key_env=self.analyzer_api_key_env,
            concurrency=self.analyzer_concurrency, timeout=self.analyzer_timeout,
            http_retries=self.analyzer_http_retries, retries=self.analyzer_retries,
            temperature=self.analyzer_temperature, max_new_tokens=self.analyzer_max_new_tokens,
            max_prompt_tokens=self.analyzer_max_prompt_tokens, max_field_chars=self.analyzer_max_field_chars,
            device=self.analyzer_device, max_step_skills=self.max_step_skills, gamma=self.gamma, seed=seed,
        )


# ------------------------------------------------------------------ pure parts
@dataclass(frozen=True)
class RoutedSkill:
    """One skill-augmented prompt of a step sample: which kind, which text, which λ."""

    kind: Literal["episode", "step"]
    skill: str
    weight: float


def route_step(step: int, analysis: Analysis | None, route: Route, episode_weight: float,
               step_weight: float) -> list[RoutedSkill]:
    """The skills step ``step`` of an analysed trajectory is scored under (the routing table).

    ============================  ===================  =====================
    route                         t ∈ C_τ (critical)   t ∉ C_τ
    ============================  ===================  =====================
    critical_first                [step]               [episode]
    additive                      [step, episode]      [episode]
    episode_only                  [episode]            [episode]
    ============================  ===================  =====================

    As the reference's ``select_skill_teacher_sources`` (``step_priority`` / ``additive``):
    a step skill counts only when its weight is non-zero and its text is not blank;
    otherwise a critical step is routed like any other step (critical_first with
    λ_step = 0 scores the episode skill at critical steps too). A route whose own
    weight is 0 is still listed (the caller skips scoring it). A failed analysis (None)
    routes nowhere: the step gets no skill signal.
    """
    if analysis is None:
        return []
    episode = RoutedSkill("episode", analysis.episode_skill, episode_weight)
    text = analysis.step_skills.get(step, "")
    if route == "episode_only" or step_weight == 0 or not text.strip():
        return [episode]
    skill = RoutedSkill("step", text, step_weight)
    return [skill, episode] if route == "additive" else [skill]


def skill_advantage(teacher_logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
    """``A_skill = λ · (ℓ_skill − ℓ_old) · m`` per token (detached).

    Args:
        teacher_logp: [n, L] log π_old(y_l | h̃_t, y_<l). old_logp: [n, L] the same under h_t.
        mask: [n, L]. weight: [n] λ of each row's route.

    Returns:
        [n, L], 0 at padding.
    """
    return (weight[:, None] * (teacher_logp - old_logp) * mask).detach()


def _moments(x: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    values = x[mask > 0]
    if values.numel() == 0:
        return {"opid/skill_adv_mean": 0.0, "opid/skill_adv_std": 0.0, "opid/skill_adv_absmax": 0.0}
    return {"opid/skill_adv_mean": float(values.mean()),
            "opid/skill_adv_std": float(values.std()) if values.numel() > 1 else 0.0,
            "opid/skill_adv_absmax": float(values.abs().max())}


# --------------------------------------------------------------------- learner
class OPID(GRPO[OPIDConfig]):
    name = "opid"
    description = "OPID: GRPO + on-policy distillation from hindsight episode/step skills"
    paper = "arXiv 2606.26790"
    Config = OPIDConfig

    def __init__(self, config: LearnerConfig, run: RunInfo) -> None:
        super().__init__(config, run)
        cfg = self.config
        try:
            self.analyzer = Analyzer(cfg.analyzer_settings(run.seed),
                                     cache_dir=run.run_dir / "analyzer" if run.run_dir is not None else None)
        except AnalyzerConfigError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def default_config(cls, benchmark: Benchmark, family: EnvFamily) -> LearnerConfig:
        base = super().default_config(benchmark, family)  # K per family: spec §2
        return dataclasses.replace(base, max_step_skills=family.max_step_skills)

    @property
    def needs_expert(self) -> bool:
        """True with the ``oracle`` analyzer (an ablation): rollouts record the env expert's actions."""
        return self.analyzer.settings.needs_expert

    # ---------------------------------------------------------------- prepare
    def prepare(self, batch: StepBatch, ctx: StepContext) -> None:
        cfg = self.config
        n = len(batch)
        results = self.analyzer.analyze(batch.trajectories, generate=ctx.generate)
        stats = self.analyzer.last
        t0 = time.perf_counter()
        routes = [route_step(int(batch.step_index[i]), results[int(batch.traj_index[i])].analysis, cfg.route,
                             cfg.episode_skill_weight, cfg.step_skill_weight) for i in range(n)]
        # per teacher kind: Δ = ℓ_skill − ℓ_old, ℓ_skill, which rows it scored, their λ
        delta = {kind: torch.zeros_like(batch.mask) for kind in ("episode", "step")}
        teacher_lp = {kind: torch.zeros_like(batch.mask) for kind in ("episode", "step")}
        active = {kind: torch.zeros(n, dtype=torch.bool) for kind in ("episode", "step")}
        lam = {kind: torch.zeros(n, dtype=batch.mask.dtype) for kind in ("episode", "step")}
        truncations = misses = scored = 0
        secs = {"encode": 0.0, "score": 0.0}
        old = self._plain_logp(batch, ctx) if any(r.weight != 0 for rs in routes for r in rs) else None
        for k in range(2):  # pass k scores the k-th routed skill of every row that has one
            rows = [i for i in range(n) if len(routes[i]) > k and routes[i][k].weight != 0]
            if not rows or old is None:
                continue
            t1 = time.perf_counter()
            prompt_ids: list[list[int]] = []
            for i in rows:
                r = routes[i][k]
                messages, anchored = inject_skill(batch.messages[i], self.run.template, batch.task[i], r.kind,
                                                  r.skill, batch.observation[i])
                ids, truncated = self._encode(ctx, messages)
                prompt_ids.append(ids)
                truncations += truncated
                misses += not anchored
            t2 = time.perf_counter()
            teacher = ctx.score_ids(prompt_ids, rows)  # [len(rows), L], π_old under h̃_t, no grad
            for j, i in enumerate(rows):
                kind = routes[i][k].kind
                delta[kind][i] = teacher[j] - old[i]
                teacher_lp[kind][i] = teacher[j]
                active[kind][i] = True
                lam[kind][i] = routes[i][k].weight
            scored += len(rows)
            secs["encode"] += t2 - t1
            secs["score"] += time.perf_counter() - t2
        adv = sum(teacher_advantage(delta[kind], batch.mask, active[kind], lam[kind],
                                    normalize=cfg.normalize_teacher_adv, clip=cfg.clip_teacher_adv)
                  for kind in ("episode", "step"))
        batch.extras["skill_adv"] = adv
        if cfg.opd_loss_coef > 0:  # the reference's teacher_log_prob: the step skill's where active, else the episode's
            batch.extras[OPD_TEACHER] = torch.where(active["step"][:, None], teacher_lp["step"], teacher_lp["episode"])
            batch.extras[OPD_ROWS] = (active["step"] | active["episode"]).to(batch.mask.dtype)
        t3 = time.perf_counter()
        self._annotate(batch, ctx, routes, results, adv)
        secs["annotate"] = time.perf_counter() - t3
        ctx.log({
            **stats.metrics(), **_moments(adv, batch.mask),
            "opid/analysis_failed_frac": stats.failures / stats.trajectories if stats.trajectories else 0.0,
            "opid/routed_step_frac": sum(any(r.kind == "step" for r in rs) for rs in routes) / max(n, 1),
            "opid/routed_episode_frac": sum(any(r.kind == "episode" for r in rs) for rs in routes) / max(n, 1),
            "opid/routed_none_frac": sum(not rs for rs in routes) / max(n, 1),
            "opid/prompt_truncations": float(truncations), "opid/anchor_missing": float(misses),
            "opid/skill_prompts": float(scored), "opid/teacher_seconds": time.perf_counter() - t0,
            **{f"opid/{k}_seconds": v for k, v in secs.items()},
        })

    def _plain_logp(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        """ℓ_old: the loop's old_logp when the same scorer produced it, else scored here."""
        if batch.old_logp is not None and ctx.old_logp_source == "recompute":
            return batch.old_logp
        return ctx.score_ids(batch.prompt_ids, None)

    def _encode(self, ctx: StepContext, messages: list[Message]) -> tuple[list[int], bool]:
        if ctx.encode_chat is not None:
            return ctx.encode_chat(messages)
        if ctx.encode_messages is None:
            raise RuntimeError("OPID needs StepContext.encode_chat (or encode_messages) to tokenise skill prompts")
        ids = ctx.encode_messages(messages)
        limit = self.run.max_prompt_tokens
        return ids, limit is not None and len(ids) >= limit

    def _annotate(self, batch: StepBatch, ctx: StepContext, routes: Sequence[list[RoutedSkill]],
                  results: Sequence[AnalysisResult], adv: torch.Tensor) -> None:
        for i, rs in enumerate(routes):
            result = results[int(batch.traj_index[i])]
            notes: dict[str, object] = {"skill_route": "+".join(r.kind for r in rs) or "none"}
            if rs:
                notes["routed_skill"] = " + ".join(f"{r.kind} skill: {r.skill}" for r in rs)
            else:
                notes["routed_skill"] = f"none (analysis failed: {result.error})"
            if self.config.annotate_tokens:
                length = len(batch.response_ids[i])
                notes["skill_adv"] = [float(f"{float(x):.6g}") for x in adv[i, :length]]
                notes["response_tokens"] = ctx.token_strings(batch.response_ids[i])
            batch.annotate(i, **notes)

    # ------------------------------------------------------------- advantages
    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        a_ep = super().advantages(batch, ctx)  # [N, L], exactly GRPO's
        groups = batch.group_index
        zero = [bool((a_ep[groups == g] == 0).all()) for g in torch.unique(groups)]
        ctx.log({"opid/zero_adv_group_frac": sum(zero) / len(zero) if zero else 0.0})
        skill = batch.extras.get("skill_adv")
        return a_ep if skill is None else a_ep + skill

    # ------------------------------------------------------------------- loss
    def loss(self, inputs: LossInputs) -> LossOutput:
        """GRPO's loss, plus ``opd_loss_coef`` × the auxiliary OPD loss when that is > 0.

        The OPD term is :func:`learners.common.opd_loss` on the rows a skill teacher scored,
        aggregated like the other terms (``loss_agg_mode``) over the mini-batch's response
        tokens (rows without a teacher count as 0; the reference divides its token mean by
        the OPD rows' tokens only, docs/protocols.md).
        """
        cfg = self.config
        out = policy_loss(inputs, cfg)
        if cfg.opd_loss_coef <= 0 or OPD_TEACHER not in inputs.extras:
            return out
        rows = inputs.extras[OPD_ROWS][:, None]  # [n, 1]
        per_token, weight = opd_loss(inputs.logp, inputs.old_logp, inputs.extras[OPD_TEACHER],
                                     mode=cfg.opd_loss_weight_mode, clip=cfg.opd_loss_clip)
        value = aggregate(inputs, per_token * rows, cfg.loss_agg_mode)
        loss = out.loss + cfg.opd_loss_coef * value
        out.metrics.update({
            "loss/opd": float(cfg.opd_loss_coef * value.detach()),
            "opd/weight_abs_mean": float(inputs.token_mean(weight * rows)),
            "opd/active_token_frac": float(inputs.token_mean(rows.expand_as(inputs.mask))),
            "loss/total": float(loss.detach()),
        })
        return LossOutput(loss, out.metrics)
