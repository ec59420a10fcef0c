"""A separate vLLM server as the training loop's rollout engine (``model.rollout_engine=vllm-server``).

For when the engine should not share the trainer's GPUs: a vLLM OpenAI-compatible
server started by hand (on other GPUs of the node, or another machine), reached over
HTTP. Settings go in ``model.engine_options`` (JSON)::

    --set model.rollout_engine=vllm-server \\
    --set model.engine_options='{"url": "http://10.0.0.5:8000", "sync_dir": "/shared/opid-sync"}'

Start the server from the same checkpoint folder the run trains, with the developer
routes on (weight reload, prefix-cache reset) and raw log-probs::

    VLLM_SERVER_DEV_MODE=1 python -m vllm.entrypoints.openai.api_server --model FOLDER \\
        --logprobs-mode raw_logprobs --dtype bfloat16 --max-model-len 8192

What the engine does (:class:`VLLMServerEngine`):

* **generate**: prompts are chat-templated by the trainer's own encoder (both sides see
  the same tokens) and sent as token ids to ``/v1/completions``, one request per prompt
  (``concurrency`` in flight) with the request's ``seed``, ``logprobs=0`` and
  ``return_tokens_as_token_ids``, so the token ids and their raw log-probs come back.
* **load_weights**: rank 0 writes the trainer's full weights as safetensors into
  ``sync_dir`` (a folder the server can read: the default, a temp folder, only works
  when the server runs on this machine), asks the server to reload them
  (``/collective_rpc`` → the worker's ``reload_weights(weights_path=...)``) and to drop its
  prefix cache; then every process waits for it.
* **drift check** after every load: the server scores the probe batch
  (``prompt_logprobs``) and the trainer scores it too; a mismatch raises
  :class:`~opid_gym.backend.WeightSyncError` (:mod:`agents.drift`). At start, a server
  that serves other weights (e.g. left over from an earlier run) gets the run's
  initial weights first; one that still disagrees serves another model (clear error).

Cost of a sync: the full weights through the file system each step (bf16 7B ≈ 15 GB);
the colocated engine (``vllm``) avoids that. HTTP goes through ``httpx`` (``pip install
'opid-gym[openai]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

from agents.drift import DEFAULT_MAX_ABS, DEFAULT_MAX_MEAN_ABS, DriftReport, check_drift
from opid_gym.backend import BackendError, Generation, SamplingParams
from opid_gym.types import Message

SERVER_HINT = ("start it with: VLLM_SERVER_DEV_MODE=1 python -m vllm.entrypoints.openai.api_server --model FOLDER "
               "--logprobs-mode raw_logprobs (docs/scale.md)")


@dataclass(frozen=True)
class ServerSettings:
    """Where the server is and how to talk to it (``model.engine_options`` keys).

    Attributes:
        url: the server's base URL (``http://host:8000``).
        sync_dir: a folder both this machine and the server can read (weights go through
            it); None: a temporary folder (the server must run on this machine).
        model: the served model id (None: the first one the server lists).
        timeout: seconds per HTTP request (a weight reload included).
        concurrency: generation requests in flight per process.
        drift_max_mean_abs / drift_max_abs: the drift check's thresholds (nats).
    """

    url: str
    sync_dir: str | None = None
    model: str | None = None
    timeout: float = 600.0
    concurrency: int = 64
    drift_max_mean_abs: float = DEFAULT_MAX_MEAN_ABS
    drift_max_abs: float = DEFAULT_MAX_ABS


class VLLMServerEngine:
    """Generator + Scorer + WeightSync over a vLLM server; see the module docstring."""

    def __init__(self, settings: ServerSettings, policy: Any) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ImportError("the vLLM server engine needs httpx: pip install 'opid-gym[openai]'") from exc
        from agents.vllm_backend import VLLMBackend
        from opid_gym import distributed

        self.settings = settings
        self._dist = distributed
        self.client = httpx.Client(base_url=settings.url.rstrip("/"), timeout=settings.timeout)
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.concurrency))
        try:
            listed = self._request("GET", "/v1/models")["data"]
        except BackendError as exc:
            raise BackendError(f"no vLLM server answers at {settings.url}: {exc}; {SERVER_HINT}") from None
        entry = next((m for m in listed if settings.model in (None, m["id"])), None)
        if entry is None:
            raise BackendError(f"the server at {settings.url} does not serve {settings.model!r} "
                               f"(it serves {[m['id'] for m in listed]})")
        self.model = str(entry["id"])
        self.max_model_len = int(entry.get("max_model_len") or 4096)
        self.policy = policy
        self.probe = VLLMBackend.default_probe(policy)
        self.last_drift: DriftReport | None = None
        self.weight_version = 0
        self._own_dir = settings.sync_dir is None
        self.sync_dir = Path(settings.sync_dir or tempfile.mkdtemp(prefix="opid-vllm-sync-"))

    # -------------------------------------------------------------- HTTP
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            resp = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"{method} {self.settings.url}{path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 404 and path in ("/collective_rpc", "/reset_prefix_cache"):
            raise BackendError(f"the server has no {path} route (developer routes are off); {SERVER_HINT}")
        if resp.status_code >= 400:
            raise BackendError(f"{method} {self.settings.url}{path}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.json() if resp.content and "json" in resp.headers.get("content-type", "") else None

    # ---------------------------------------------------------- generate
    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
        return self.policy.encode_chat(messages, max_prompt_tokens)

    def generate(self, prompts: Sequence[list[Message]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Generation]:
        limit = self.max_model_len - 1
        if params.max_prompt_tokens is not None:
            limit = min(limit, params.max_prompt_tokens)
        encoded = [self.encode_chat(m, limit) for m in prompts]
        gens = self.generate_ids([ids for ids, _ in encoded], params, seeds)
        for g, (_, cut) in zip(gens, encoded):
            g.prompt_truncated = cut
        return gens

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams,
                     seeds: Sequence[int] | None = None) -> list[Generation]:
        if seeds is not None and len(seeds) != len(prompt_ids):
            raise ValueError(f"{len(seeds)} seeds for {len(prompt_ids)} prompts")

        def one(i: int) -> Generation:
            ids = list(prompt_ids[i])
            room = self.max_model_len - len(ids)
            if room < 1:
                raise ValueError(f"prompt {i} has {len(ids)} tokens; the server's max_model_len "
                                 f"is {self.max_model_len}")
            body: dict[str, Any] = {
                "model": self.model, "prompt": ids, "max_tokens": min(params.max_new_tokens, room),
                "temperature": params.temperature, "top_p": params.top_p, "logprobs": 0,
                "return_tokens_as_token_ids": True, "skip_special_tokens": True,
            }
            if params.stop:
                body["stop"] = list(params.stop)
            if seeds is not None:
                body["seed"] = int(seeds[i]) % (2**63)
            choice = self._request("POST", "/v1/completions", body)["choices"][0]
            lp = choice.get("logprobs") or {}
            tokens = [int(str(t).rsplit(":", 1)[1]) for t in lp.get("tokens") or []]
            logps = [float(x) for x in lp.get("token_logprobs") or []]
            if len(tokens) != len(logps):
                raise BackendError(f"the server returned {len(logps)} log-probs for {len(tokens)} tokens")
            return Generation(text=choice.get("text") or "", prompt_token_ids=ids, token_ids=tokens, logprobs=logps,
                              finish_reason=str(choice.get("finish_reason") or "stop"))

        return list(self._pool.map(one, range(len(prompt_ids))))

    # -------------------------------------------------------------- score
    def score(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """log π(response tokens | prompt) from the server's prompt log-probs."""
        if len(prompt_ids) != len(response_ids):
            raise ValueError(f"{len(prompt_ids)} prompts for {len(response_ids)} responses")

        def one(i: int) -> list[float]:
            if not response_ids[i]:
                return []
            full = list(prompt_ids[i]) + list(response_ids[i])
            body = {"model": self.model, "prompt": full, "max_tokens": 1, "temperature": 1.0, "prompt_logprobs": 0}
            entries = self._request("POST", "/v1/completions", body)["choices"][0]["prompt_logprobs"]
            start = len(prompt_ids[i])
            return [float(entry[str(tok)]["logprob"]) for tok, entry in zip(response_ids[i], entries[start:])]

        return list(self._pool.map(one, range(len(prompt_ids))))

    # ------------------------------------------------------- weight sync
    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> DriftReport:
        """Rank 0 writes the weights and has the server reload them; then every rank drift-checks.

        ``named_tensors`` is consumed on every rank (a sharded trainer gathers collectively).
        """
        dist = self._dist.current()
        if dist.is_main:
            self.weight_version += 1
            folder = self.sync_dir / f"weights-{self.weight_version:06d}"
            write_safetensors(named_tensors, folder)
            self._request("POST", "/collective_rpc", {"method": "reload_weights",
                                                      "kwargs": {"weights_path": str(folder)}})
            self._request("POST", "/reset_prefix_cache")  # its KV was computed with the old weights
            for old in self.sync_dir.glob("weights-*"):
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
        else:
            for _ in named_tensors:  # take part in the gather, keep nothing
                pass
        self._dist.barrier()
        return self.drift_check()

    def drift_check(self) -> DriftReport:
        """Server and trainer score the probe batch (server side on rank 0, shared); raises on a mismatch."""
        import torch

        probe = self.probe
        engine = self.score(probe.prompt_ids, probe.response_ids) if self._dist.current().is_main else None
        engine = self._dist.broadcast_object(engine)
        with torch.no_grad():
            out = self.policy.forward_logprobs(probe.prompt_ids, probe.response_ids)
        trainer = [out.logprobs[b, : len(r)].float().cpu().tolist() for b, r in enumerate(probe.response_ids)]
        self.last_drift = check_drift(engine, trainer, max_mean_abs=self.settings.drift_max_mean_abs,
                                      max_abs=self.settings.drift_max_abs)
        return self.last_drift

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()
        if self._own_dir and self._dist.current().is_main:
            shutil.rmtree(self.sync_dir, ignore_errors=True)


def write_safetensors(named_tensors: Iterable[tuple[str, Any]], folder: Path) -> Path:
    """Write ``(name, tensor)`` pairs as ``folder/model.safetensors`` (tied tensors written once each
    under every name: vLLM's reload from disk expects a tied head in the file)."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seen: set[int] = set()
    state = {}
    for name, tensor in named_tensors:
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        state[name] = t.clone() if ptr in seen else t  # safetensors refuses shared storage
        seen.add(ptr)
    save_file(state, str(tmp / "model.safetensors"))
    os.replace(tmp, folder)
    return folder


def make_rollout_engine(model: Any, policy: Any) -> VLLMServerEngine:
    """``model.rollout_engine=vllm-server``: settings from ``model.engine_options`` (``url`` required)."""
    options = json.loads(model.engine_options) if model.engine_options else {}
    known = {f.name for f in fields(ServerSettings)}
    if "url" not in options:
        raise BackendError("model.rollout_engine=vllm-server needs the server's address: "
                           "--set model.engine_options='{\"url\": \"http://HOST:8000\"}'")
    unknown = sorted(set(options) - known)
    if unknown:
        raise BackendError(f"unknown vllm-server engine option(s) {unknown}; known: {sorted(known)}")
    engine = VLLMServerEngine(ServerSettings(**options), policy)
    from opid_gym.backend import WeightSyncError

    try:
        engine.drift_check()  # does the server serve the run's initial weights?
    except WeightSyncError:  # e.g. a server left with another run's weights: send ours
        try:
            engine.load_weights(_full_weights(policy))
        except WeightSyncError as exc:
            engine.close()
            raise BackendError(f"the vLLM server does not serve this model even after loading the run's initial "
                               f"weights ({exc}); start it from the same checkpoint folder") from None
    return engine


def _full_weights(policy: Any) -> Iterable[tuple[str, Any]]:
    """The policy's full weights (gathered from FSDP shards on every rank: a collective)."""
    for name, tensor in policy.module.state_dict().items():
        yield name, (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach()
