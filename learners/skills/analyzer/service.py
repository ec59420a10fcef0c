"""Running the analyzer over a step's trajectories: backends, retries, cache, usage.

``Analyzer.analyze(trajectories)`` returns one :class:`AnalysisResult` per trajectory,
never raising for a trajectory whose analysis fails (its ``analysis`` is None and
``error`` says why; OPID then gives its steps no skill signal and counts it).

Backends (``AnalyzerSettings.kind``):

* ``hindsight-rules``: :func:`~learners.skills.analyzer.rules.rules_analysis`, no model;
* ``oracle``: :func:`~learners.skills.analyzer.oracle.oracle_analysis`, no model; reads
  the environment expert's actions (an ABLATION, not the paper's method; it needs the
  rollout to record ``Step.expert_action``: :attr:`AnalyzerSettings.needs_expert`);
* ``openai`` (or ``openai:<model>``): any OpenAI-compatible endpoint through
  the core's chat client (:func:`opid_gym.chat.make_chat_client`), at most ``concurrency`` requests at once;
* ``hf:<model>`` / ``vllm:<model>``: a local model through the project's agent
  backends (:func:`opid_gym.agent.make_agent`), all trajectories in one batch;
* ``policy``: the policy being trained (``generate`` given per call by the loop).

Retries: a transport failure (timeout, refused connection, HTTP error) is final for
that trajectory once the client's own retries are spent; an answer that does not parse
is asked again with a stricter instruction, at most ``retries`` more times.

Cache: successful analyses are appended to ``<cache_dir>/analyses.jsonl`` keyed by the
trajectory id and a fingerprint of the trajectory's content and the analyzer's
settings; a resumed run re-rolls the same trajectories (same ids, same content) and
reads their analyses back instead of paying for them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from learners.skills.analyzer.parse import Analysis, AnalysisParseError, parse_analysis
from learners.skills.analyzer.prompt import PROMPT_VERSION, build_analysis_messages
from learners.skills.analyzer.oracle import oracle_analysis
from learners.skills.analyzer.rules import rules_analysis
from opid_gym.agent import derive_seed
from opid_gym.types import Message, Trajectory

RULES = "hindsight-rules"
ORACLE = "oracle"
OFFLINE = (RULES, ORACLE)
"""Analyzers that need no model: they run in-process, deterministically."""
LOCAL_PREFIXES = ("hf", "vllm")


class AnalyzerConfigError(ValueError):
    """Settings that cannot work (reported before any work starts)."""


@dataclass(frozen=True)
class AnalyzerSettings:
    """How to analyse trajectories (built from OPID's config; see there for each field).

    The defaults follow the reference code's analyzer call (``jinyangwu/OPID``,
    ``opid/analysis.py``): 2 attempts (``retries`` = 1 re-ask after an unparsable answer),
    up to 4096 new tokens, the endpoint's default temperature (None: not sent; local
    and policy analyzers then sample at 1.0, the OpenAI API's default), fields unclipped.
    """

    kind: str = RULES
    model: str = ""
    base_url: str = "https://api.openai.com/v1"
    api_key_file: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8
    timeout: float = 120.0
    http_retries: int = 2
    retries: int = 1
    temperature: float | None = None
    max_new_tokens: int = 4096
    max_prompt_tokens: int | None = 8192
    max_field_chars: int | None = None
    device: str = "auto"
    max_step_skills: int = 5
    gamma: float = 0.95
    seed: int = 0

    @property
    def backend(self) -> str:
        """``rules``, ``oracle``, ``openai``, ``local`` or ``policy``."""
        prefix = self.kind.partition(":")[0]
        if self.kind == RULES:
            return "rules"
        if self.kind == ORACLE:
            return "oracle"
        if prefix == "openai":
            return "openai"
        if prefix in LOCAL_PREFIXES and self.kind.partition(":")[2]:
            return "local"
        if self.kind == "policy":
            return "policy"
        raise AnalyzerConfigError(f"unknown analyzer {self.kind!r}; use hindsight-rules, oracle (ablation), openai "
                                  "(with analyzer_model), openai:<model>, hf:<model>, vllm:<model> or policy")

    @property
    def needs_expert(self) -> bool:
        """Whether the analyses read the environment expert's per-step actions (``oracle``)."""
        return self.backend == "oracle"

    @property
    def openai_model(self) -> str:
        return self.kind.partition(":")[2] or self.model

    def validate(self, *, check_key: bool = True) -> None:
        """Fail early on settings that cannot work (``check_key``: read the API key source too)."""
        backend = self.backend
        if backend == "openai":
            if not self.openai_model:
                raise AnalyzerConfigError("analyzer=openai needs a model: set learner.analyzer_model "
                                          "(or use analyzer=openai:<model>)")
            if "://" not in self.base_url:
                raise AnalyzerConfigError(f"analyzer_base_url must be an http(s) URL, got {self.base_url!r}")
            if check_key:
                self.api_key()  # a missing key file fails now, not at the first step

    def api_key(self) -> str | None:
        """The API key from ``api_key_file`` (first line) or the ``api_key_env`` variable."""
        if self.api_key_file:
            path = Path(self.api_key_file).expanduser()
            if not path.is_file():
                raise AnalyzerConfigError(f"analyzer API key file not found: {path}")
            lines = path.read_text(encoding="utf-8").strip().splitlines()
            if not lines or not lines[0].strip():
                raise AnalyzerConfigError(f"analyzer API key file is empty: {path}")
            return lines[0].strip()
        if self.api_key_env:
            value = os.environ.get(self.api_key_env, "").strip()
            if not value:
                raise AnalyzerConfigError(f"the environment variable {self.api_key_env} (analyzer_api_key_env) "
                                          "is not set")
            return value
        return None

    def signature(self) -> str:
        """What an analysis depends on besides the trajectory (part of the cache key)."""
        return json.dumps([PROMPT_VERSION, self.kind, self.model, self.max_step_skills, self.gamma,
                           self.max_field_chars], sort_keys=True)


@dataclass
class AnalysisResult:
    """The outcome of analysing one trajectory."""

    traj_id: str
    analysis: Analysis | None
    error: str | None = None
    attempts: int = 0
    cached: bool = False


@dataclass
class AnalyzerStats:
    """Usage of one :meth:`Analyzer.analyze` call (logged every step)."""

    trajectories: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: int = 0
    parse_failures: int = 0
    retries: int = 0
    cache_hits: int = 0
    seconds: float = 0.0

    def metrics(self, prefix: str = "opid/analyzer_") -> dict[str, float]:
        return {
            f"{prefix}trajectories": float(self.trajectories), f"{prefix}calls": float(self.calls),
            f"{prefix}tokens_in": float(self.tokens_in), f"{prefix}tokens_out": float(self.tokens_out),
            f"{prefix}failures": float(self.failures), f"{prefix}parse_failures": float(self.parse_failures),
            f"{prefix}retries": float(self.retries), f"{prefix}cache_hits": float(self.cache_hits),
            f"{prefix}latency": self.seconds,
        }


# ------------------------------------------------------------------- backends
API_DEFAULT_TEMPERATURE = 1.0
"""The OpenAI API's default temperature: what local and policy analyzers sample at when
``temperature`` is None (an OpenAI-compatible endpoint gets no temperature field)."""


def default_temperature(s: AnalyzerSettings) -> float:
    return API_DEFAULT_TEMPERATURE if s.temperature is None else s.temperature


@dataclass
class Completion:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


Generate = Callable[..., Any]
"""``generate(prompts, params, seeds) -> list[Generation]`` (the policy's sampler)."""


class ChatBackend(Protocol):
    def complete(self, conversations: Sequence[list[Message]], seeds: Sequence[int]) -> list[Completion | Exception]:
        """One completion (or the exception that stopped it) per conversation, in order."""
        ...


class OpenAIBackend:
    """An OpenAI-compatible endpoint (``ChatClient.chat_many``, bounded concurrency)."""

    def __init__(self, s: AnalyzerSettings) -> None:
        from opid_gym.chat import make_chat_client

        self.settings = s
        self.client = make_chat_client(base_url=s.base_url, model=s.openai_model, api_key=s.api_key(), timeout=s.timeout,
                                 max_retries=s.http_retries, concurrency=s.concurrency, seed=s.seed,
                                 defaults={"temperature": s.temperature, "max_tokens": s.max_new_tokens})

    def complete(self, conversations: Sequence[list[Message]], seeds: Sequence[int]) -> list[Completion | Exception]:
        out: list[Completion | Exception] = []
        for res in self.client.chat_many(conversations, seeds=list(seeds)):
            out.append(res if isinstance(res, Exception) else Completion(res.text, res.prompt_tokens,
                                                                         res.completion_tokens))
        return out


class AgentBackend:
    """A local model through an agent spec (``hf:<model>``, ``vllm:<model>``)."""

    def __init__(self, s: AnalyzerSettings) -> None:
        from opid_gym.agent import make_agent

        options: dict[str, Any] = {"temperature": default_temperature(s), "max_new_tokens": s.max_new_tokens,
                                   "max_prompt_tokens": s.max_prompt_tokens}
        if s.kind.startswith("hf:"):
            options["device"] = s.device
        self.agent = make_agent(s.kind, **options)

    def complete(self, conversations: Sequence[list[Message]], seeds: Sequence[int]) -> list[Completion | Exception]:
        from opid_gym.agent import AgentRequest

        requests = [AgentRequest(messages=list(c), seed=int(seed), step=0, observation="", admissible_actions=None,
                                 expert_action=None, action_format="json") for c, seed in zip(conversations, seeds)]
        try:
            replies = self.agent.act(requests)
        except Exception as exc:  # a local model failing must not stop the run
            return [exc for _ in conversations]
        return [Completion(r.text, len(r.prompt_token_ids or []), len(r.token_ids or [])) for r in replies]


class PolicyBackend:
    """The policy being trained, through the loop's ``generate``."""

    def __init__(self, s: AnalyzerSettings) -> None:
        self.settings = s
        self.generate: Generate | None = None

    def complete(self, conversations: Sequence[list[Message]], seeds: Sequence[int]) -> list[Completion | Exception]:
        from opid_gym.backend import SamplingParams

        if self.generate is None:
            err = RuntimeError("analyzer=policy needs the loop's generate (StepContext.generate is None)")
            return [err for _ in conversations]
        s = self.settings
        params = SamplingParams(temperature=default_temperature(s), max_new_tokens=s.max_new_tokens,
                                max_prompt_tokens=s.max_prompt_tokens)
        try:
            gens = self.generate(list(conversations), params, list(seeds))
        except Exception as exc:
            return [exc for _ in conversations]
        return [Completion(g.text, len(g.prompt_token_ids), len(g.token_ids)) for g in gens]


def make_backend(s: AnalyzerSettings) -> ChatBackend | None:
    backend = s.backend
    if backend == "openai":
        return OpenAIBackend(s)
    if backend == "local":
        return AgentBackend(s)
    if backend == "policy":
        return PolicyBackend(s)
    return None


# ---------------------------------------------------------------------- cache
def fingerprint(traj: Trajectory, signature: str) -> str:
    """A digest of what the analysis of ``traj`` depends on."""
    h = hashlib.blake2b(digest_size=16)
    for part in (signature, traj.task, traj.task_type, str(traj.won), str(traj.truncated),
                 json.dumps(traj.expert_plan)):
        h.update(part.encode("utf-8", "replace") + b"\x1f")
    for s in traj.steps:
        for part in (s.observation, s.response, s.action, str(s.valid), repr(float(s.reward)), s.next_observation,
                     str(s.expert_action)):
            h.update(part.encode("utf-8", "replace") + b"\x1f")
    return h.hexdigest()


class AnalysisCache:
    """Append-only JSONL of successful analyses, ``{traj_id, fingerprint, analysis}`` per line."""

    FILE = "analyses.jsonl"

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / self.FILE
        self.entries: dict[tuple[str, str], Analysis] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.entries[(rec["traj_id"], rec["fingerprint"])] = Analysis.from_dict(rec["analysis"])
                except (ValueError, KeyError, TypeError):  # a line cut by a kill
                    continue

    def get(self, traj_id: str, fp: str) -> Analysis | None:
        return self.entries.get((traj_id, fp))

    def put(self, records: Sequence[tuple[str, str, Analysis, dict[str, Any]]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for traj_id, fp, analysis, extra in records:
                self.entries[(traj_id, fp)] = analysis
                f.write(json.dumps({"traj_id": traj_id, "fingerprint": fp, "analysis": analysis.to_dict(), **extra},
                                   ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


# ------------------------------------------------------------------- analyzer
@dataclass
class Analyzer:
    """Analyses trajectories with one backend; see the module docstring.

    Args:
        settings: the analyzer settings (validated here).
        cache_dir: where ``analyses.jsonl`` lives (None: no cache).
        backend: a ready backend (tests); default: built from ``settings`` on first use.
    """

    settings: AnalyzerSettings
    cache_dir: Path | None = None
    backend: ChatBackend | None = None
    last: AnalyzerStats = field(default_factory=AnalyzerStats)

    def __post_init__(self) -> None:
        self.settings.validate()
        self.cache = AnalysisCache(self.cache_dir) if self.cache_dir is not None else None

    def analyze(self, trajectories: Sequence[Trajectory], *, generate: Generate | None = None) -> list[AnalysisResult]:
        """One result per trajectory, in order (see the module docstring). Usage in ``self.last``."""
        s = self.settings
        start = time.perf_counter()
        stats = AnalyzerStats(trajectories=len(trajectories))
        results: list[AnalysisResult | None] = [None] * len(trajectories)
        sig = s.signature()
        fps = [fingerprint(t, sig) for t in trajectories]
        todo: list[int] = []
        for i, (traj, fp) in enumerate(zip(trajectories, fps)):
            hit = self.cache.get(traj.traj_id, fp) if self.cache is not None else None
            if hit is not None:
                results[i] = AnalysisResult(traj.traj_id, hit, cached=True)
                stats.cache_hits += 1
            else:
                todo.append(i)
        if s.backend == "rules":
            for i in todo:
                results[i] = AnalysisResult(trajectories[i].traj_id, rules_analysis(trajectories[i], s.max_step_skills))
        elif s.backend == "oracle":
            for i in todo:
                try:
                    results[i] = AnalysisResult(trajectories[i].traj_id,
                                                oracle_analysis(trajectories[i], s.max_step_skills))
                except ValueError as exc:
                    results[i] = AnalysisResult(trajectories[i].traj_id, None, str(exc))
        elif todo:
            self._ask(trajectories, todo, results, stats, generate)
        new = [(trajectories[i].traj_id, fps[i], r.analysis, {"attempts": r.attempts})
               for i in todo if (r := results[i]) is not None and r.analysis is not None]
        if self.cache is not None:
            self.cache.put(new)
        final = [r if r is not None else AnalysisResult(t.traj_id, None, "not analysed")
                 for r, t in zip(results, trajectories)]
        stats.failures = sum(r.analysis is None for r in final)
        stats.seconds = time.perf_counter() - start
        self.last = stats
        return final

    def _ask(self, trajectories: Sequence[Trajectory], todo: list[int], results: list[AnalysisResult | None],
             stats: AnalyzerStats, generate: Generate | None) -> None:
        s = self.settings
        if self.backend is None:
            try:
                self.backend = make_backend(s)
            except Exception as exc:  # e.g. a local model that cannot load: no skills, counted, run goes on
                for i in todo:
                    results[i] = AnalysisResult(trajectories[i].traj_id, None, f"analyzer unavailable: {exc}")
                return
        if isinstance(self.backend, PolicyBackend):
            self.backend.generate = generate
        reasons: dict[int, str | None] = {i: None for i in todo}
        previous: dict[int, str] = {i: "" for i in todo}
        pending = list(todo)
        for attempt in range(s.retries + 1):
            if not pending:
                break
            if attempt:
                stats.retries += len(pending)
            convs = [build_analysis_messages(trajectories[i], gamma=s.gamma, max_step_skills=s.max_step_skills,
                                             max_field_chars=s.max_field_chars, retry_reason=reasons[i],
                                             previous_answer=previous[i])
                     for i in pending]
            seeds = [derive_seed(s.seed, "analyzer", trajectories[i].traj_id, attempt) for i in pending]
            outs = self.backend.complete(convs, seeds)
            stats.calls += len(pending)
            still: list[int] = []
            for i, out in zip(pending, outs):
                traj = trajectories[i]
                if isinstance(out, Exception):  # transport failure: the client already retried
                    results[i] = AnalysisResult(traj.traj_id, None, f"{type(out).__name__}: {out}", attempt + 1)
                    continue
                stats.tokens_in += out.tokens_in
                stats.tokens_out += out.tokens_out
                try:
                    analysis = parse_analysis(out.text, traj.length, s.max_step_skills)
                except AnalysisParseError as exc:
                    stats.parse_failures += 1
                    reasons[i] = str(exc)
                    previous[i] = out.text
                    results[i] = AnalysisResult(traj.traj_id, None, f"unparsable answer: {exc}", attempt + 1)
                    still.append(i)
                    continue
                results[i] = AnalysisResult(traj.traj_id, analysis, None, attempt + 1)
            pending = still
