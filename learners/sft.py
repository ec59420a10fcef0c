"""SFT: supervised fine-tuning on another agent's demonstrations (a warm start for RL).

Each training step rolls out B training tasks with a *demonstrator* instead of the
policy — the environment's ``expert`` (its plan, with the sub-goal it pursues as the
reasoning), any model agent (``openai:<model>``, ``hf:<model>``, a trained run
``run:<dir>``) — through the same rollout, prompt template, history manager and parser
as RL. The policy's tokenizer turns every step into (the exact RL prompt tokens, the
demonstrator's response tokens + end of turn), and the loss is the negative
log-likelihood of the response tokens only (prompt tokens never enter it)::

    w_i   = 1                       (or 1[τ won] with only_won=True)
    loss  = − Σ_i Σ_l w_i · m_i,l · log πθ(y_i,l | x_i, y_i,<l)  /  Σ_i Σ_l m_i,l

Everything else is an ordinary run: the same trainers (local, FSDP with ``--nproc``),
checkpoints, resume, run folder, final eval, report and results store, filed under the
learner name ``sft``. A later RL run starts from its weights with
``opid-bench run --model run:<sft run folder>``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from opid_gym.agent import AgentReply, AgentRequest
from opid_gym.benchmark import Benchmark
from opid_gym.family import EnvFamily
from opid_gym.learner import ConfigError, Learner, LearnerConfig, LossInputs, LossOutput, StepBatch, StepContext


@dataclass(frozen=True)
class SFTConfig(LearnerConfig):
    """SFT settings (the shared policy-loss fields are unused: no ratio, KL or entropy).

    Attributes:
        demonstrator: the agent whose behaviour is learned: ``expert`` or any agent spec
            of ``opid-bench eval --agent`` (``openai:<model>``, ``hf:<model>``, ``run:<dir>``,
            ``saved:<path>``: trajectories saved by ``eval --out`` or a run, replayed).
        demonstrator_options: a JSON object of that agent's options (``base_url``,
            ``api_key_file``, ``temperature``...); model agents default to the benchmark's
            validation sampling settings.
        only_won: learn only from episodes the demonstrator won (rejection sampling; the
            natural choice for a model demonstrator). Lost episodes then weigh 0.
    """

    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    demonstrator: str = "expert"
    demonstrator_options: str | None = None
    only_won: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.demonstrator:
            raise ConfigError("learner.demonstrator must name an agent (expert, openai:<model>, run:<dir>...)")
        if self.demonstrator_options is not None:
            try:
                opts = json.loads(self.demonstrator_options)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"learner.demonstrator_options is not valid JSON: {exc}") from None
            if not isinstance(opts, dict):
                raise ConfigError("learner.demonstrator_options must be a JSON object")


def demonstration_weights(won: torch.Tensor, mask: torch.Tensor, only_won: bool) -> torch.Tensor:
    """Per-token weights [N, L]: the mask, or the mask of won episodes' samples only.

    Args:
        won: [N] bool, the sample's episode was won.
        mask: [N, L] float, 1 on response tokens.
    """
    if not only_won:
        return mask.clone()
    return mask * won.to(mask.dtype)[:, None]


def nll_loss(logp: torch.Tensor, weights: torch.Tensor, num_tokens: float) -> torch.Tensor:
    """−Σ(weights · logp) / num_tokens: the token-mean negative log-likelihood.

    Args:
        logp: [n, l] log πθ of the response tokens (with gradient).
        weights: [n, l] per-token weights (0 at padding and on excluded samples).
        num_tokens: the mini-batch's response-token count (micro-batch losses add up).
    """
    return -(weights * logp).sum() / max(float(num_tokens), 1.0)


class DemonstrationAgent:
    """Any agent's responses, tokenised by the trained policy as its own would be.

    ``prompt_token_ids`` are the policy's encoding of the very messages the rollout built
    (chat template, left truncation to ``max_prompt_tokens``) and ``token_ids`` the
    response text's tokens plus the end-of-turn token (``policy.encode_response``); no
    log-probs (the demonstrator is not the policy).
    """

    def __init__(self, agent: Any, policy: Any, max_prompt_tokens: int | None) -> None:
        self.agent = agent
        self.policy = policy
        self.max_prompt_tokens = max_prompt_tokens
        self.name = f"demonstrator:{getattr(agent, 'name', 'agent')}"
        self.needs_expert = bool(getattr(agent, "needs_expert", False))

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        replies = self.agent.act(requests)
        out = []
        for req, reply in zip(requests, replies):
            prompt_ids, _ = self.policy.encode_chat(list(req.messages), self.max_prompt_tokens)
            tokens = self.policy.encode_response(reply.text) if reply.text else []
            out.append(AgentReply(reply.text, list(prompt_ids), list(tokens), None))
        return out


def make_demonstrator(spec: str, options: dict[str, Any], benchmark: Benchmark) -> Any:
    """The demonstrator agent of ``spec`` (model agents sample with the benchmark's
    validation settings unless ``options`` say otherwise)."""
    from opid_gym.agent import make_agent

    opts: dict[str, Any] = {}
    if ":" in spec and not spec.startswith("saved:"):
        opts.update(temperature=benchmark.temperature, top_p=benchmark.top_p,
                    max_new_tokens=benchmark.max_new_tokens, max_prompt_tokens=benchmark.max_prompt_tokens)
    opts.update(options)
    return make_agent(spec, **opts)


class SFT(Learner[SFTConfig]):
    name = "sft"
    description = "supervised fine-tuning on a demonstrator's steps (expert, API model, run:<dir>); NLL of responses"
    paper = "behaviour cloning (warm start before RL)"
    Config = SFTConfig
    run_defaults = {"rollout.group_size": 1, "optim.lr": 1e-5, "optim.mini_batch_size": 32}

    @classmethod
    def default_config(cls, benchmark: Benchmark, family: EnvFamily) -> LearnerConfig:
        cfg = super().default_config(benchmark, family)
        return dataclasses.replace(cfg, kl_coef=0.0, entropy_coef=0.0)  # no reference, no entropy bonus

    @property
    def needs_old_logp(self) -> bool:
        return False

    def rollout_agent(self, policy_agent: Any, policy: Any) -> Any:
        cfg = self.config
        assert isinstance(cfg, SFTConfig)
        from opid_gym.run_folder import RunError

        options = json.loads(cfg.demonstrator_options) if cfg.demonstrator_options else {}
        try:
            agent = make_demonstrator(cfg.demonstrator, options, self.run.benchmark)
        except (KeyError, TypeError, ValueError, FileNotFoundError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise RunError(f"cannot build the demonstrator {cfg.demonstrator!r}: {message}") from None
        return DemonstrationAgent(agent, policy, self.run.max_prompt_tokens)

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        assert isinstance(cfg, SFTConfig)
        weights = demonstration_weights(batch.won, batch.mask, cfg.only_won)  # [N, L]
        ctx.log({"sft/samples_used": float((weights.sum(1) > 0).sum()),
                 "sft/demo_success": float(batch.won.float().mean()) if len(batch) else 0.0})
        return weights

    def loss(self, inputs: LossInputs) -> LossOutput:
        loss = nll_loss(inputs.logp, inputs.advantages * inputs.mask, inputs.num_tokens)
        value = float(loss.detach())
        return LossOutput(loss, {"loss/nll": value, "loss/total": value})  # the NLL is the whole loss
