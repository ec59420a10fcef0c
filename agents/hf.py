"""The transformers backend: one model + tokenizer as Generator, Scorer and TrainablePolicy.

:class:`HFPolicy` runs on CPU or one GPU and serves every model need of the gym:

* :meth:`HFPolicy.generate` samples a response per prompt with an own decode loop over a
  left-padded batch and a KV cache. Each row draws from its own ``torch.Generator`` seeded
  with that request's seed, so a response does not depend on which other prompts share
  the batch. Rows that finish leave the batch (their cache rows are dropped).
* :meth:`HFPolicy.score` / :meth:`HFPolicy.forward_logprobs` compute log π(y_l | x, y_<l)
  for given (prompt, response) token lists: prompts left-padded, responses right-padded,
  so every response starts at the same column and one slice of the logits serves the
  whole batch. Masks and position ids come from the lengths, never from pad ids (for
  SmolLM2 the pad token IS the end-of-turn token the responses end with).

Conventions shared with the other backends (vLLM, OpenAI-compatible):

* ``Generation.logprobs`` are log-probs under the model's unmodified distribution
  (temperature 1, no top-p), whatever the sampling settings.
* The end-of-sequence token, when sampled, is the last of ``token_ids`` and is not in
  ``text``. A stop string ends the response: ``text`` is cut just before it and
  ``token_ids`` end with the token that completed it (vLLM's convention).

Options of the training loop: :meth:`reference_copy` (a frozen copy for the KL to π_ref),
:meth:`save` / :meth:`load`, ``dtype`` / ``autocast`` (bf16), gradient checkpointing and
optional LoRA adapters (``peft``, ``pip install 'opid-gym[lora]'``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from agents.models import ModelError, load_model_and_tokenizer, require
from opid_gym.backend import Generation, SamplingParams, TokenLogprobs
from opid_gym.types import Message

if TYPE_CHECKING:
    import torch

POLICY_FILE = "opid_policy.json"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (peft) on the linear layers; only adapter weights train."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = "all-linear"


@dataclass(frozen=True)
class HFOptions:
    """How to load and run a transformers model.

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (GPU when there is one).
        dtype: weight dtype (``float32``, ``bfloat16``, ``float16``, ``auto``).
        autocast: run forwards under ``torch.autocast`` with this dtype (``bfloat16``), or None.
        max_batch_size: prompts decoded at once (more are split; bounds KV-cache memory).
        score_batch_size: at most this many (prompt, response) pairs per forward in
            :meth:`HFPolicy.score` (fewer where lengths differ: :func:`length_buckets`).
        gradient_checkpointing: trade compute for activation memory in training.
        lora: LoRA adapter settings, or None for full fine-tuning.
        train_top_layers: train only the top N decoder blocks and the final norm
            (:func:`freeze_below_top`), or None for every weight.
        cache_dir: where built-in models are built/converted (default ``$OPID_GYM_CACHE``).
        threads: torch CPU threads for this process (``torch.set_num_threads``; None: torch's
            default). On a CPU shared with other jobs 1 thread can be several times faster.
    """

    device: str = "auto"
    dtype: str | None = None
    autocast: str | None = None
    max_batch_size: int = 32
    score_batch_size: int = 8
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    train_top_layers: int | None = None
    cache_dir: str | None = None
    threads: int | None = None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, entropy: bool = False):
    """Log-probs (and entropies) of ``targets`` under ``logits``, computed in float32.

    Args:
        logits: [B, L, V] next-token logits.
        targets: [B, L] token ids.
    Returns:
        (logprobs [B, L], entropy [B, L] or None).
    """
    import torch

    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)  # [B, L]
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    ent = None
    if entropy:
        ent = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logp, ent


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``; renormalise.

    Args:
        probs: [B, V] probabilities.
    Returns:
        [B, V] probabilities, zero outside the nucleus.
    """
    import torch

    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass of strictly more likely tokens
    keep_sorted = before < top_p  # the most likely token is always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def pack_pairs(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int):
    """Left-pad prompts and right-pad responses into one [B, P + R] batch.

    Returns:
        input_ids [B, P+R], attention_mask [B, P+R], position_ids [B, P+R],
        targets [B, R] (response ids, pad after the end), mask [B, R] float, and P.
    """
    import torch

    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (the response is predicted from it)")
    B = len(prompt_ids)
    P = max(len(p) for p in prompt_ids)
    R = max(len(r) for r in response_ids)
    input_ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + R), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        input_ids[i, P - len(p):P] = torch.as_tensor(list(p), dtype=torch.long)
        input_ids[i, P:P + len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        attn[i, P - len(p):P + len(r)] = 1
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
    targets = input_ids[:, P:]
    mask = attn[:, P:].float()
    return input_ids, attn, position_ids, targets, mask, P


def length_buckets(lengths: Sequence[tuple[int, int]], max_batch: int, max_waste: float = 0.25) -> list[list[int]]:
    """Group (prompt, response) pairs into micro-batches that waste little on padding.

    :func:`pack_pairs` pads every row of a batch to the longest prompt plus the longest
    response, so one long pair in a batch of short ones makes the whole batch long.
    Pairs are taken longest prompt first (ties: longest response); a batch is closed
    when it holds ``max_batch`` pairs or when adding the next pair would make its padded
    size, rows × (longest prompt + longest response), exceed ``1 + max_waste`` times its
    real tokens. A pair alone is never padded, so batching never costs more than 25%
    (by default) over scoring the pairs one at a time.

    Args:
        lengths: (prompt tokens, response tokens) per pair.
    Returns:
        lists of pair indices, each one micro-batch; every index appears exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i][0], -lengths[i][1], i))
    buckets: list[list[int]] = []
    cur: list[int] = []
    p_max = r_max = real = 0
    for i in order:
        p, r = lengths[i]
        if cur:
            n_p, n_r = max(p_max, p), max(r_max, r)
            padded = (len(cur) + 1) * (n_p + n_r)
            if len(cur) >= max_batch or padded > (1.0 + max_waste) * (real + p + r):
                buckets.append(cur)
                cur, p_max, r_max, real = [], 0, 0, 0
        cur.append(i)
        p_max, r_max, real = max(p_max, p), max(r_max, r), real + p + r
    if cur:
        buckets.append(cur)
    return buckets


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class HFPolicy:
    """A transformers causal LM as :class:`~opid_gym.backend.Generator`, ``Scorer`` and ``TrainablePolicy``."""

    def __init__(self, model: Any, tokenizer: Any, options: HFOptions = HFOptions(), *, name: str = "",
                 source: str | None = None) -> None:
        import torch

        if options.threads is not None:
            torch.set_num_threads(max(1, int(options.threads)))
        self.options = options
        self.name = name or getattr(model.config, "_name_or_path", "model")
        self.source = source or self.name
        self.device = torch.device(_resolve_device(options.device))
        self.tokenizer = tokenizer
        if options.lora is not None and not _is_peft(model):
            model = _add_lora(model, options.lora)
        if options.train_top_layers is not None:
            if options.lora is not None:
                raise ModelError("train_top_layers and LoRA adapters do not combine: choose one")
            freeze_below_top(model, options.train_top_layers)
        if options.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        self.model = model.to(self.device)
        self.model.eval()
        self.eos_ids = _eos_ids(model, tokenizer)
        if not self.eos_ids:
            raise ModelError(f"model {self.name!r} defines no end-of-sequence token")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        params = inspect.signature(_base_forward(self.model)).parameters
        self._keeps_logits = "logits_to_keep" in params
        # transformers >= 5.24 names the KV-cache argument `cache` (`past_key_values` before)
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name: str, options: HFOptions = HFOptions()) -> HFPolicy:
        """Load a model by name (``tiny``, ``smollm2-135m``, a folder, a HF id) or a :meth:`save` folder."""
        meta = Path(name) / POLICY_FILE
        if meta.is_file():
            return cls.load(name, options)
        model, tokenizer, source = load_model_and_tokenizer(name, dtype=options.dtype, cache_dir=options.cache_dir)
        return cls(model, tokenizer, options, name=name, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike, options: HFOptions | None = None) -> HFPolicy:
        """Load what :meth:`save` wrote (full weights, or base model + LoRA adapters)."""
        path = Path(path)
        meta = json.loads((path / POLICY_FILE).read_text())
        if options is None:
            options = HFOptions()
        if meta.get("lora") is None:
            model, tokenizer, source = load_model_and_tokenizer(str(path), dtype=options.dtype,
                                                                cache_dir=options.cache_dir)
            options = _replace(options, lora=None)
            return cls(model, tokenizer, options, name=meta.get("name", str(path)), source=source)
        require("peft", "lora")
        from peft import PeftModel

        base, tokenizer, source = load_model_and_tokenizer(meta["base"], dtype=options.dtype,
                                                           cache_dir=options.cache_dir)
        model = PeftModel.from_pretrained(base, str(path), is_trainable=True)
        lora = meta["lora"]
        options = _replace(options, lora=LoraSettings(**{**lora, "target_modules": _tuple(lora["target_modules"])}))
        return cls(model, tokenizer, options, name=meta.get("name", str(path)), source=source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights (or the LoRA adapters) and the tokenizer to ``path``.

        :meth:`load` / :meth:`from_pretrained` read it back. Full models are ordinary
        transformers checkpoints, so ``hf:<path>`` and vLLM load them too.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        lora = self.options.lora
        meta = {"name": self.name, "base": self.source, "lora": asdict(lora) if lora is not None else None}
        (path / POLICY_FILE).write_text(json.dumps(meta, indent=1))
        return path

    # --------------------------------------------------------- the torch side
    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def reference_copy(self) -> HFPolicy:
        """A frozen deep copy (eval mode, no gradients) to serve as π_ref."""
        model = copy.deepcopy(self.model)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        options = _replace(self.options, gradient_checkpointing=False, train_top_layers=None)
        ref = HFPolicy(model, self.tokenizer, options,
                       name=self.name + "@ref", source=self.source)
        return ref

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Full-model weights with the base model's names (LoRA merged), for weight sync."""
        if _is_peft(self.model):
            merged = copy.deepcopy(self.model).merge_and_unload()
            return merged.state_dict()
        return self.model.state_dict()

    def _autocast(self):
        import torch

        if not self.options.autocast:
            return contextlib.nullcontext()
        dtype = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                 "fp16": torch.float16}[self.options.autocast]
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _decode_step_autocast(self):
        """The autocast of one-token decode steps: the prompt's, except on a CPU.

        On a CPU, reduced-precision matmuls of one token per row are slower than float32 ones
        (SmolLM2-135M, 16 rows, this project's 2-core CPU: a bf16-autocast step takes 1.5x a
        float32 one), while a prompt's forward is faster under bf16 (1.6x; measured by
        ``benchmarks/cpu_autocast.py``). So on a CPU the prompt runs under autocast and the
        steps after it in the weights' dtype (the bf16 KV cache of the prompt is promoted as
        the steps append to it).
        """
        return contextlib.nullcontext() if self.device.type == "cpu" else self._autocast()

    # ------------------------------------------------------------ tokenising
    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
        """Apply the tokenizer's chat template (with the generation prompt) and tokenise.

        Prompts longer than ``max_prompt_tokens`` keep their last tokens (left truncation).
        """
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ModelError(f"tokenizer of {self.name!r} has no chat template (use an instruction model)")
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            return ids[len(ids) - max_prompt_tokens:], True
        return ids, False

    def encode_response(self, text: str) -> list[int]:
        """An assistant response as the model would emit it: the text's tokens, then the
        end-of-turn token that stops generation (the tokenizer's EOS when it is one)."""
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        eos = self.tokenizer.eos_token_id
        end = int(eos) if eos is not None and int(eos) in self.eos_ids else min(self.eos_ids)
        return ids + [end]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    # --------------------------------------------------------------- scoring
    def forward_logprobs(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
                         entropy: bool = False) -> TokenLogprobs:
        """log π(y_l | x, y_<l) for each pair, with gradients (one forward over the batch).

        Returns TokenLogprobs with logprobs / mask / entropy of shape [B, R], R = longest response.
        """
        import torch

        input_ids, attn, pos, targets, mask, P = pack_pairs(prompt_ids, response_ids, self.pad_id)
        R = targets.shape[1]
        dev = self.device
        if R == 0:
            empty = torch.zeros((len(prompt_ids), 0), device=dev)
            return TokenLogprobs(empty, empty.clone(), empty.clone() if entropy else None)
        kwargs: dict[str, Any] = dict(input_ids=input_ids.to(dev), attention_mask=attn.to(dev),
                                      position_ids=pos.to(dev), use_cache=False)
        if self._keeps_logits:
            kwargs["logits_to_keep"] = R + 1  # only the positions that predict response tokens
        with self._autocast():
            logits = self.model(**kwargs).logits
        # position P-1+l predicts response token l; the last kept position predicts nothing
        logits = logits[:, -(R + 1):-1] if self._keeps_logits else logits[:, P - 1:P + R - 1]
        logp, ent = token_logprobs(logits, targets.to(dev), entropy)
        mask = mask.to(dev)
        real = mask > 0  # where(), not a product: a -inf at a padded position must not become NaN
        return TokenLogprobs(torch.where(real, logp, 0.0), mask,
                             torch.where(real, ent, 0.0) if ent is not None else None)

    def score(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per-token log-probs of each response under its prompt, no gradient, micro-batched.

        Runs in eval mode (no dropout) whatever mode the module is in, like generation.
        """
        import torch

        if len(prompt_ids) != len(response_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
        out: list[list[float]] = [[] for _ in prompt_ids]
        buckets = length_buckets([(len(p), len(r)) for p, r in zip(prompt_ids, response_ids)],
                                 max(1, self.options.score_batch_size))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for idx in buckets:
                    res = self.forward_logprobs([prompt_ids[i] for i in idx], [response_ids[i] for i in idx])
                    rows = res.logprobs.float().cpu().tolist()
                    for j, i in enumerate(idx):
                        out[i] = rows[j][:len(response_ids[i])]
        finally:
            self.model.train(was_training)
        return out

    # ------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[list[Message]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Generation]:
        """Chat-template each prompt, then :meth:`generate_ids`."""
        encoded = [self.encode_chat(m, params.max_prompt_tokens) for m in prompts]
        gens = self.generate_ids([ids for ids, _ in encoded], params, seeds)
        for g, (_, truncated) in zip(gens, encoded):
            g.prompt_truncated = g.prompt_truncated or truncated
        return gens

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams,
                     seeds: Sequence[int] | None = None) -> list[Generation]:
        """Sample one response per tokenised prompt (seeds: one per prompt; None = fresh random).

        Prompts are decoded in batches of ``max_batch_size``, longest first (less padding);
        the result is in the input order and, per row, independent of the batching.
        """
        if seeds is None:
            seeds = [secrets.randbits(63) for _ in prompt_ids]
        if len(seeds) != len(prompt_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(seeds)} seeds")
        _check_params(params)
        prompts = []
        truncated = []
        for ids in prompt_ids:
            ids = list(ids)
            cut = params.max_prompt_tokens is not None and len(ids) > params.max_prompt_tokens
            prompts.append(ids[len(ids) - params.max_prompt_tokens:] if cut else ids)
            truncated.append(cut)
        out: list[Generation | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        bs = max(1, self.options.max_batch_size)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            for i, g in zip(idx, self._decode_batch([prompts[i] for i in idx], params, [seeds[i] for i in idx])):
                g.prompt_truncated = truncated[i]
                out[i] = g
        return out  # type: ignore[return-value]

    def _decode_batch(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:
        import torch

        if any(len(p) == 0 for p in prompts):
            raise ValueError("empty prompt: generation needs at least one prompt token")
        dev = self.device
        B, P = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((B, P), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B, P), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, P - len(p):] = torch.as_tensor(p, dtype=torch.long)
            attn[i, P - len(p):] = 1
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        input_ids, attn, position_ids = input_ids.to(dev), attn.to(dev), position_ids.to(dev)
        gens = [torch.Generator(device=dev).manual_seed(int(s) & ((1 << 63) - 1)) for s in seeds]
        tokens: list[list[int]] = [[] for _ in range(B)]
        logps: list[list[float]] = [[] for _ in range(B)]
        texts: list[str | None] = [None] * B
        reasons = ["length"] * B
        alive = list(range(B))  # original row of each live batch row
        next_pos = position_ids[:, -1] + 1  # [b]
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keeps_logits else {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), contextlib.ExitStack() as scope:
                reserved = _reserved_cache(self.model, params.max_new_tokens)
                start = {self._cache_kw: reserved} if reserved is not None else {}
                with self._autocast():  # the prompt
                    out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids,
                                     use_cache=True, **start, **kwargs)
                scope.enter_context(self._decode_step_autocast())  # the steps after it
                cache = _out_cache(out)
                for _ in range(params.max_new_tokens):
                    logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [b, V], T = 1
                    chosen = self._sample(logp, params, [gens[r] for r in alive])  # [b]
                    picked = logp.gather(-1, chosen[:, None]).squeeze(-1).tolist()
                    keep = []
                    for j, (row, tok, lp) in enumerate(zip(alive, chosen.tolist(), picked)):
                        tokens[row].append(tok)
                        logps[row].append(lp)
                        if tok in self.eos_ids:
                            reasons[row] = "stop"
                            continue
                        if params.stop:
                            text = self.decode(tokens[row])
                            cut = _find_stop(text, params.stop)
                            if cut is not None:
                                texts[row], reasons[row] = text[:cut], "stop"
                                continue
                        keep.append(j)
                    if not keep or len(tokens[alive[0]]) >= params.max_new_tokens:
                        break
                    if len(keep) < len(alive):  # drop finished rows from the batch and the cache
                        sel = torch.as_tensor(keep, device=dev)
                        cache.reorder_cache(sel)
                        attn, next_pos, chosen = attn[sel], next_pos[sel], chosen[sel]
                        alive = [alive[j] for j in keep]
                    attn = torch.cat([attn, attn.new_ones((len(alive), 1))], dim=1)
                    out = self.model(input_ids=chosen[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                                     use_cache=True, **{self._cache_kw: cache}, **kwargs)
                    cache = _out_cache(out)
                    next_pos = next_pos + 1
        finally:
            self.model.train(was_training)
        return [
            Generation(text=texts[i] if texts[i] is not None else self.decode(tokens[i]), prompt_token_ids=list(prompts[i]),
                       token_ids=tokens[i], logprobs=logps[i], finish_reason=reasons[i])
            for i in range(B)
        ]

    @staticmethod
    def _sample(logp: torch.Tensor, params: SamplingParams, gens: list[torch.Generator]) -> torch.Tensor:
        """One token per row: greedy at temperature 0, else nucleus sampling from row i's generator."""
        import torch

        if params.temperature <= 0:
            return logp.argmax(-1)
        if params.temperature == 1.0:
            probs = logp.exp()  # logp is already log_softmax at temperature 1
        else:
            probs = torch.softmax(logp / params.temperature, dim=-1)
        probs = top_p_filter(probs, params.top_p)
        # Inverse-CDF sampling: one uniform per row from that row's own generator, then one
        # batched cumsum + search (B multinomial calls over the vocabulary cost ~10% of a
        # decode step of a small model on CPU).
        u = torch.cat([torch.rand(1, generator=g, device=probs.device, dtype=torch.float64) for g in gens])
        cdf = probs.double().cumsum(-1)  # float64: no drift over a 150k vocabulary
        target = (u * cdf[:, -1]).unsqueeze(-1)
        chosen = torch.searchsorted(cdf, target, right=True).squeeze(-1)
        return chosen.clamp_(max=probs.shape[-1] - 1)


# ---------------------------------------------------------------- helpers
def _check_params(params: SamplingParams) -> None:
    if params.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}")
    if not 0.0 < params.top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {params.top_p}")
    if params.temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {params.temperature}")
    if params.max_prompt_tokens is not None and params.max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1, got {params.max_prompt_tokens}")


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(s) for s in stops if s]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return frozenset(ids)


def _out_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@functools.lru_cache(maxsize=1)
def _reserved_layer_class() -> type | None:
    """A transformers ``DynamicLayer`` that writes new keys/values into reserved room.

    transformers' ``DynamicLayer`` appends each decode step's key/value with ``torch.cat``,
    copying the whole cache every step (an evaluation round of the demo, 20 prompts, 64 new
    tokens, this project's CPU: 19.85 s with those copies, 18.95 s without;
    ``benchmarks/decode_cache.py``). This layer
    keeps its states in buffers with ``reserve`` free positions after the prompt and writes
    each step in place; attention reads a view of the filled part, so the math is the same.
    A step of another dtype (a float32 step after a bf16-autocast prompt) promotes the
    buffers once, as ``torch.cat`` would. None when transformers has no such layer API.
    """
    try:
        import torch
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return None

    class ReservedLayer(DynamicLayer):
        def __init__(self, reserve: int) -> None:
            super().__init__()
            self.reserve = max(1, int(reserve))
            self._k: torch.Tensor | None = None  # [B, H, capacity, D]
            self._v: torch.Tensor | None = None
            self._n = 0  # filled positions

        def _view(self) -> None:
            assert self._k is not None and self._v is not None
            self.keys, self.values = self._k[..., :self._n, :], self._v[..., :self._n, :]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            t = key_states.shape[-2]
            k, v = self._k, self._v
            dtype = key_states.dtype if k is None else torch.promote_types(k.dtype, key_states.dtype)
            if k is None or v is None or self._n + t > k.shape[-2] or k.dtype != dtype:
                cap = self._n + t + self.reserve
                shape = (*key_states.shape[:-2], cap, key_states.shape[-1])
                self._k = key_states.new_empty(shape, dtype=dtype)
                self._v = value_states.new_empty((*shape[:-1], value_states.shape[-1]), dtype=dtype)
                if k is not None and v is not None and self._n:
                    self._k[..., :self._n, :] = k[..., :self._n, :]
                    self._v[..., :self._n, :] = v[..., :self._n, :]
            assert self._k is not None and self._v is not None
            self._k[..., self._n:self._n + t, :] = key_states
            self._v[..., self._n:self._n + t, :] = value_states
            self._n += t
            self._view()
            return self.keys, self.values

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            if self._k is not None and self._v is not None and self._n:
                self._k = self._k.index_select(0, beam_idx.to(self._k.device))
                self._v = self._v.index_select(0, beam_idx.to(self._v.device))
                self._view()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self._k is not None and self._v is not None and self._n:
                self._k, self._v = self._k[indices, ...], self._v[indices, ...]
                self._view()

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            if self._k is not None and self.is_initialized:
                self._n = self.keys.shape[-2]

        def reset(self) -> None:
            self._k = self._v = None
            self._n = 0
            super().reset()

    return ReservedLayer


def _reserved_cache(model: Any, reserve: int) -> Any:
    """A ``DynamicCache`` for ``model`` whose full-attention layers write in place
    (:func:`_reserved_layer_class`); None (the model's own cache) where that cannot be built."""
    layer_class = _reserved_layer_class()
    if layer_class is None:
        return None
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache(config=model.config)
    except (ImportError, TypeError, ValueError, AttributeError):
        return None
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None  # sliding-window or other layer kinds: keep transformers' own
    cache.layers = [layer_class(reserve) for _ in layers]
    return cache


def _base_forward(model: Any):
    inner = model.get_base_model() if _is_peft(model) else model
    return inner.forward


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def decoder_blocks(model: Any) -> Any:
    """The model's stack of decoder blocks (an ``nn.ModuleList``: ``layers`` in Llama-,
    Qwen- and Mistral-like models, ``h`` in GPT-2-like ones)."""
    import torch

    base = getattr(model, "base_model", model)
    for name in ("layers", "h", "blocks"):
        blocks = getattr(base, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return blocks
    raise ModelError(f"{type(model).__name__}: no stack of decoder blocks found (looked for layers, h, blocks)")


def freeze_below_top(model: Any, top: int) -> None:
    """Leave only the top ``top`` decoder blocks and the final norm trainable.

    Everything else (embeddings, a head tied to them or not, the lower blocks) gets
    ``requires_grad = False``, so autograd's backward stops at the lowest trained block:
    on SmolLM2-135M (30 blocks) a warm-start mini-batch's forward + backward with the top
    15 trained takes 20.4 s against 33.4 s with every weight (the same sorted micro-batches;
    ``python benchmarks/micro_batches.py``, ``benchmarks/results/micro_batches_2026-12-06.txt``).
    """
    blocks = decoder_blocks(model)
    if not 1 <= top <= len(blocks):
        raise ModelError(f"train_top_layers={top}, but the model has {len(blocks)} decoder blocks")
    for p in model.parameters():
        p.requires_grad_(False)
    base = getattr(model, "base_model", model)
    final_norm = next((m for m in (getattr(base, "norm", None), getattr(base, "ln_f", None)) if m is not None), None)
    for module in [*blocks[len(blocks) - top:], *([final_norm] if final_norm is not None else [])]:
        for p in module.parameters():
            p.requires_grad_(True)


def _add_lora(model: Any, lora: LoraSettings) -> Any:
    require("peft", "lora")
    from peft import LoraConfig, get_peft_model

    target = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=target,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _replace(options: HFOptions, **changes: Any) -> HFOptions:
    from dataclasses import replace

    return replace(options, **changes)


# ------------------------------------------------------------------ agent
_SAMPLING_KEYS = ("temperature", "top_p", "max_new_tokens", "max_prompt_tokens", "stop")


def make_agent(model: str, **options: Any):
    """``hf:<model>``: a :class:`~agents.model_agent.ModelAgent` over an :class:`HFPolicy`.

    Options: the sampling settings (temperature, top_p, max_new_tokens, max_prompt_tokens,
    stop) and :class:`HFOptions` fields (device, dtype, autocast, max_batch_size, ...;
    ``lora`` takes a dict of :class:`LoraSettings` fields).
    """
    from agents.model_agent import ModelAgent, split_options

    sampling, rest = split_options(options, _SAMPLING_KEYS, [f.name for f in _fields(HFOptions)])
    if isinstance(rest.get("lora"), dict):
        rest["lora"] = LoraSettings(**rest["lora"])
    policy = HFPolicy.from_pretrained(model, HFOptions(**rest))
    return ModelAgent(policy, sampling, name=f"hf:{model}")


def _fields(cls: type) -> Iterator[Any]:
    from dataclasses import fields

    return iter(fields(cls))


__all__ = ["HFOptions", "HFPolicy", "LoraSettings", "length_buckets", "make_agent", "pack_pairs", "token_logprobs", "top_p_filter"]
