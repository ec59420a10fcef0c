"""The ``tiny`` model: a random-init causal LM with a locally trained tokenizer, no download.

Built for fast tests and plumbing (it has learned nothing, so it answers in noise):

* tokenizer: byte-level BPE trained in-process with the ``tokenizers`` library on a small
  corpus generated below (agent-style sentences, tags, digits), plus the ChatML special
  tokens and a Jinja chat template. Byte-level means every string encodes.
* model: a 2-layer Qwen2 decoder, hidden size 64, 2 query heads of size 32 sharing one
  key/value head (head size >= 32 so vLLM's CPU kernels accept it), tied embeddings.

Like SmolLM2, the pad token IS the end-of-turn token (``<|im_end|>``): code that builds
attention masks from pad ids instead of lengths breaks on this model in the tests, as it
would on the real one.

:func:`build_tiny` is deterministic given the seed and caches the result on disk
(``<cache>/tiny-v<version>-s<seed>``), so a second build is a folder look-up.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

TINY_VERSION = 1
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _corpus() -> list[str]:
    """A few thousand short lines in the shape of agent prompts and answers (written here)."""
    verbs = ["go to", "take", "put", "open", "close", "clean", "heat", "cool", "use", "examine", "search"]
    things = ["apple", "mug", "knife", "book", "lamp", "towel", "plate", "bowl", "pen", "key", "shirt", "cup"]
    places = ["countertop", "drawer", "cabinet", "fridge", "sink", "table", "shelf", "desk", "bed", "sofa"]
    lines = []
    for i, (v, t, p) in enumerate(itertools.product(verbs, things, places)):
        n = i % 9 + 1
        lines.append(f"<think>I need the {t}. It may be on the {p} {n}.</think><action>{v} {t} {n} in/on {p} {n}</action>")
        lines.append(f"You arrive at {p} {n}. On the {p} {n}, you see a {t} {n}, and a {things[i % 12]} {n + 1}.")
        lines.append(f"Your task is to: put a {t} in {p}. Admissible actions: {v} {p} {n}, look, inventory.")
    for i in range(400):
        q = f"question {i}: who wrote the book number {i * 7 % 100}?"
        lines.append(f"<search>{q}</search> <answer>the answer is {i % 13} and {i % 5}.</answer>")
        lines.append(f"Search results: Doc {i % 3 + 1} (Title: entry {i}) The value {i * 3} is listed here.")
    lines.append("The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}<>/\\|-_+=*&^%$#@~`")
    return lines


def build_tiny_tokenizer(vocab_size: int = 1024):
    """Train the byte-level BPE tokenizer (deterministic) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token=None,
        unk_token=None, chat_template=CHAT_TEMPLATE, model_max_length=4096,
    )


def build_tiny_model(vocab_size: int, eos_id: int, seed: int = 0):
    """A random-init 2-layer Qwen2 causal LM (weights depend only on ``seed``)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        tie_word_embeddings=True, initializer_range=0.1, eos_token_id=eos_id, pad_token_id=eos_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = eos_id
    return model


def default_cache_dir() -> Path:
    """``$OPID_GYM_CACHE`` or ``~/.cache/opid-gym`` (a folder of built or converted models)."""
    return Path(os.environ.get("OPID_GYM_CACHE") or Path.home() / ".cache" / "opid-gym")


def build_tiny(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Build (once) and return the folder of the tiny model + tokenizer.

    The folder is written to a temporary sibling and renamed into place, so concurrent
    builders and interrupted builds never leave a half-written model behind.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"tiny-v{TINY_VERSION}-s{seed}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), tokenizer.eos_token_id, seed)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=root))
    try:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: theirs is identical
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
