"""GPU check: vLLM vs transformers generation, one GRPO and one OPID step with vLLM rollouts, memory.

For a person with one H100/H200 (target: under 8 minutes, no network)::

    bash benchmarks/gpu_check.sh                  # = python benchmarks/gpu_check.py, under a time limit
    python benchmarks/gpu_check.py --model /path/to/qwen2-folder   # a real checkpoint instead

and, on any CPU (CI), the same code path without vLLM and CUDA, in seconds::

    python benchmarks/gpu_check.py --dry-run

Everything it needs is built in this process: the model is a Qwen2-architecture decoder
with random weights (Qwen2.5-0.5B's layer shapes, ~360M parameters, with the locally
trained byte-level BPE tokenizer of the ``tiny`` model, vocabulary 1024; ``--dry-run``:
the ``tiny`` model itself), saved as an ordinary checkpoint folder so that both
backends load the same files; the environment is a small word game defined below.

Steps (each timed; a failing step is reported in the table and the others still run):

1. **generation**: the same prompts and per-request seeds through the transformers
   backend (bfloat16 on the GPU) and through a vLLM engine built as the training loop
   builds it (:func:`agents.vllm_rollout.engine_config`): generated tokens per second
   and their ratio.
2. **grpo step** / **opid step**: one training step each of the real loop
   (:class:`opid_gym.train.Run`) with ``model.rollout_engine=vllm``: rollouts through the
   engine, the update, then the weight sync (weights loaded into the engine) and the
   drift check (engine vs trainer log-probs on the probe batch; a mismatch raises
   ``WeightSyncError`` and the row says so). OPID uses its model-free analyzer.
3. **memory**: the GPU's peak memory: torch's peak allocation per step, and the most
   device memory in use (``total − free``, which includes vLLM's own pools).

The table is printed and, unless ``--no-save``, written to
``benchmarks/results/gpu_check_<date>_<gpu>.txt``. Exit code 0 when every step passed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from opid_gym.env import TaskState, TextEnv, Transition  # noqa: E402
from opid_gym.family import EnvFamily  # noqa: E402
from opid_gym.history import PromptTemplate  # noqa: E402

# --------------------------------------------------------------- the word game
WORDS = ("apple", "lamp", "mug", "towel", "knife", "plate", "book", "key")
PROMPT = PromptTemplate(
    intro="You are an agent in a word game.",
    task_line="Your task is to: {task}",
    history_header="Your last {k} move(s):",
    turn="[{observation}] -> {action}",
    current="Now at move {step}: {observation}",
    first_current="Move {step}: {observation}",
    admissible="Words: [{actions}]",
    instruction="Think inside <think> </think>, then answer inside <action> </action>.",
)


class WordEnv(TextEnv):
    """Task i: say the word ``WORDS[i]``; won when the action contains it (random models win sometimes)."""

    family = EnvFamily("gpucheck")
    action_format = "think_action"
    prompt = PROMPT

    def __init__(self, *, max_steps: int = 2, render_mode: str | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self._target = ""

    def _num_tasks(self) -> int:
        return len(WORDS)

    def task_ids(self) -> list[str]:
        return [f"word-{w}" for w in WORDS]

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        self._target = WORDS[index]
        return TaskState(observation="You see a shelf of words.", task=f"say the word {self._target}",
                         task_id=f"word-{self._target}", task_type="word", admissible_actions=list(WORDS))

    def _act(self, action: str) -> Transition:
        won = self._target in action
        return Transition("Correct." if won else "Try again.", 10.0 if won else 0.0, done=won, won=won,
                          admissible_actions=list(WORDS))

    def expert_action(self) -> str | None:
        return self._target


def register_game() -> None:
    import gymnasium

    import opid_gym
    from opid_gym.benchmark import Benchmark
    from opid_gym.registry import full_env_id, register_env

    if full_env_id("gpu-check-words") not in gymnasium.registry:
        register_env("gpu-check-words", "benchmarks.gpu_check:WordEnv", description="GPU check word game")
    bench = Benchmark("gpu-check", "opid/gpu-check-words", "opid/gpu-check-words", max_steps=2, history_length=1,
                      invalid_penalty=0.1, max_prompt_tokens=512, max_new_tokens=64, description="GPU check game")
    opid_gym.BENCHMARKS.register("gpu-check", bench, bench.description, replace=True)


# ------------------------------------------------------------------- the model
SMALL_QWEN2 = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                   num_key_value_heads=2, head_dim=64)
"""Qwen2.5-0.5B's layer shapes (its 151k vocabulary replaced by the local 1024-token one)."""


def build_small_qwen2(folder: Path, seed: int = 0) -> Path:
    """A random-init Qwen2 decoder + the local tokenizer, saved as a checkpoint folder (no network)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from agents.tiny import build_tiny_tokenizer

    if (folder / "config.json").is_file():
        return folder
    tok = build_tiny_tokenizer()
    eos = tok.eos_token_id
    config = Qwen2Config(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=True,
                         initializer_range=0.02, eos_token_id=eos, pad_token_id=eos, bos_token_id=None,
                         torch_dtype="bfloat16", **SMALL_QWEN2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.to(torch.bfloat16)  # the checkpoint in bfloat16 (the trainer upcasts to float32 master weights)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------- helpers
class Report:
    """Rows of (step, measure, value, note), printed as one table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []
        self.failed: list[str] = []

    def add(self, step: str, measure: str, value: Any, note: str = "") -> None:
        if isinstance(value, float):
            value = f"{value:.4g}"
        self.rows.append((step, measure, str(value), note))

    def fail(self, step: str, exc: BaseException) -> None:
        self.failed.append(step)
        self.add(step, "FAILED", type(exc).__name__, str(exc).splitlines()[0][:160] if str(exc) else "")

    def table(self) -> str:
        head = ("step", "measure", "value", "note")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(4)]
        line = "  ".join("-" * w for w in widths)
        fmt = "  ".join(f"{{:{w}}}" for w in widths)
        return "\n".join([fmt.format(*head), line, *(fmt.format(*r).rstrip() for r in self.rows)])


def device_used_gib() -> float:
    """Memory in use on the current GPU by every allocator (total − free), GiB."""
    import torch

    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


class Memory:
    """Torch's peak allocation per step and the most device memory seen in use."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.device_peak = 0.0

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def sample(self) -> None:
        if self.cuda:
            self.device_peak = max(self.device_peak, device_used_gib())

    def torch_peak(self) -> float | str:
        import torch

        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else "n/a (CPU)"


def free_cuda() -> None:
    """Give memory back between steps (a closed vLLM engine's process groups and pools too)."""
    import gc

    import torch

    gc.collect()
    if "vllm" in sys.modules:
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception as exc:  # best effort: the next step reports memory that stayed taken
            print(f"gpu_check: vLLM clean-up: {exc}", file=sys.stderr)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synthetic_prompts(n: int) -> list[list[dict[str, str]]]:
    """n agent-style chat prompts of a few hundred tokens (the same for both backends)."""
    out = []
    for i in range(n):
        seen = ", ".join(f"a {WORDS[(i + k) % len(WORDS)]} {k + 1}" for k in range(12))
        text = (f"{PROMPT.intro} Your task is to: put a {WORDS[i % len(WORDS)]} on the desk {i % 7 + 1}. "
                f"You arrive at countertop {i % 5 + 1}. On the countertop you see {seen}. "
                f"Admissible actions: go to desk 1, take {WORDS[i % len(WORDS)]} 1, look, inventory. "
                f"{PROMPT.instruction}")
        out.append([{"role": "user", "content": text}])
    return out


# ----------------------------------------------------------------------- steps
def generation_step(report: Report, mem: Memory, model_dir: str, args: Any, cuda: bool, use_vllm: bool) -> None:
    import torch

    from agents.hf import HFOptions, HFPolicy
    from opid_gym.backend import SamplingParams

    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens)
    seeds = list(range(1000, 1000 + args.prompts))
    mem.start()
    policy = HFPolicy.from_pretrained(model_dir, HFOptions(device="cuda" if cuda else "cpu",
                                                           dtype="bfloat16" if cuda else "float32",
                                                           max_batch_size=args.prompts))
    prompt_ids = [policy.encode_chat(m)[0] for m in synthetic_prompts(args.prompts)]
    report.add("generation", "prompts x max new tokens", f"{args.prompts} x {args.new_tokens}",
               f"prompt tokens {min(map(len, prompt_ids))}-{max(map(len, prompt_ids))}")
    policy.generate_ids(prompt_ids[:2], params, seeds[:2])  # warm-up (kernels, allocator)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    gens = policy.generate_ids(prompt_ids, params, seeds)
    if cuda:
        torch.cuda.synchronize()
    hf_s = time.perf_counter() - t0
    hf_tokens = sum(len(g.token_ids) for g in gens)
    report.add("generation", "transformers tokens/s", hf_tokens / hf_s, f"{hf_tokens} tokens in {hf_s:.2f}s")
    mem.sample()
    report.add("generation", "transformers peak GiB (torch)", mem.torch_peak())
    del policy, gens
    free_cuda()
    if not use_vllm:
        report.add("generation", "vLLM tokens/s", "skipped", "dry run: no vLLM engine (--engine vllm to use one)")
        return
    from agents.vllm_backend import VLLMBackend
    from agents.vllm_rollout import engine_config
    from opid_gym.config import ModelConfig

    model_cfg = ModelConfig(name=model_dir, autocast="bfloat16" if cuda else None, engine_memory=args.engine_memory,
                            engine_max_len=2048, engine_options=args.engine_options)
    t0 = time.perf_counter()
    engine = VLLMBackend(engine_config(model_cfg, cuda=cuda, world_size=1))
    report.add("generation", "vLLM engine start s", time.perf_counter() - t0)
    try:
        engine.generate_ids(prompt_ids[:2], params, seeds[:2])
        t0 = time.perf_counter()
        vgens = engine.generate_ids(prompt_ids, params, seeds)
        v_s = time.perf_counter() - t0
        v_tokens = sum(len(g.token_ids) for g in vgens)
        report.add("generation", "vLLM tokens/s", v_tokens / v_s, f"{v_tokens} tokens in {v_s:.2f}s")
        report.add("generation", "vLLM / transformers", (v_tokens / v_s) / (hf_tokens / hf_s), "same prompts and seeds")
        mem.sample()
    finally:
        engine.close()
        del engine
        free_cuda()


def training_step(report: Report, mem: Memory, learner: str, model_dir: str, args: Any, cuda: bool,
                  use_vllm: bool, out: Path) -> None:
    from opid_gym.config import resolve_config
    from opid_gym.train import Run

    sets = [f"model.name={model_dir}", "steps=1", "rollout.tasks_per_step=" + str(args.tasks),
            "rollout.group_size=" + str(args.group), f"rollout.max_new_tokens={args.train_new_tokens}",
            "rollout.max_prompt_tokens=512", "optim.lr=1e-5", "optim.mini_batch_size=256",
            f"optim.micro_batch_size={args.micro_batch}", "eval.final=false", "log.tensorboard=false",
            "log.rollouts_every=0", "checkpoint.keep=1", f"model.engine_memory={args.engine_memory}",
            "model.engine_max_len=2048"]
    sets += ["model.device=cuda", "model.autocast=bfloat16"] if cuda else ["model.device=cpu", "model.cpu_threads=1"]
    if use_vllm:
        sets.append("model.rollout_engine=vllm")
        if args.engine_options:
            sets.append(f"model.engine_options={args.engine_options}")
    cfg = resolve_config(learner, "gpu-check", set_items=sets)
    mem.start()
    t0 = time.perf_counter()
    run = Run(cfg, out / learner, record_results=False, quiet=True)
    run.train()
    total = time.perf_counter() - t0
    mem.sample()
    import json

    rec = json.loads((out / learner / "metrics.jsonl").read_text().splitlines()[-1])
    name = f"{learner} step"
    report.add(name, "wall s (build + step + checkpoint)", total,
               "rollouts: " + ("vLLM" if use_vllm else "transformers (dry run)"))
    for key in ("rollout", "prepare", "update", "sync"):
        report.add(name, f"time/{key} s", float(rec.get(f"time/{key}", 0.0)))
    nan = float("nan")
    report.add(name, "episodes / samples / tokens", f"{rec['rollout/episodes']:.0f} / "
               f"{rec.get('rollout/samples', 0):.0f} / {rec['rollout/tokens_generated']:.0f}")
    report.add(name, "loss/total, grad_norm", f"{rec.get('loss/total', nan):.4g}, {rec.get('grad_norm', nan):.4g}")
    if "sync/drift_mean_abs" in rec:
        report.add(name, "drift mean / max |dlogp|",
                   f"{rec['sync/drift_mean_abs']:.3g} / {rec['sync/drift_max_abs']:.3g}",
                   "engine vs trainer after the weight load: passed")
    elif use_vllm:
        raise RuntimeError("no drift check was recorded after the weight sync")
    if learner == "opid":
        report.add(name, "opid/skill_adv_absmax", float(rec.get("opid/skill_adv_absmax", float("nan"))))
    report.add(name, "peak GiB (torch)", mem.torch_peak())


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, transformers rollouts (CI)")
    ap.add_argument("--model", default=None,
                    help="a Qwen2-family checkpoint folder, or tiny / smollm2-135m (default: built in-process)")
    ap.add_argument("--engine", choices=["auto", "vllm", "none"], default="auto",
                    help="auto: vLLM when CUDA and vLLM are present (never in --dry-run)")
    ap.add_argument("--prompts", type=int, default=None, help="generation prompts (64; dry run 4)")
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per generation (256; dry run 8)")
    ap.add_argument("--tasks", type=int, default=None, help="training tasks per step (16; dry run 2)")
    ap.add_argument("--group", type=int, default=None, help="group size (8; dry run 2)")
    ap.add_argument("--train-new-tokens", type=int, default=None, help="response limit in training (64; dry run 8)")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--engine-memory", type=float, default=0.25, help="GPU share of the vLLM engine")
    ap.add_argument("--engine-options", default=None, help='JSON, e.g. \'{"enforce_eager": true}\' (faster start)')
    ap.add_argument("--budget", type=float, default=450.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--out", default=None, help="result file (default benchmarks/results/gpu_check_<date>_<gpu>.txt)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    dry = args.dry_run
    for key, full, small in (("prompts", 64, 4), ("new_tokens", 256, 8), ("tasks", 16, 2), ("group", 8, 2),
                             ("train_new_tokens", 64, 8)):
        if getattr(args, key) is None:
            setattr(args, key, small if dry else full)

    start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available() and not dry
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --dry-run on a CPU", file=sys.stderr)
        return 2
    try:
        import vllm

        vllm_version = vllm.__version__
    except ImportError:
        vllm_version = None
    use_vllm = args.engine == "vllm" or (args.engine == "auto" and cuda and vllm_version is not None)
    if use_vllm and vllm_version is None:
        print("gpu_check: vLLM is not installed: pip install 'opid-gym[vllm]'", file=sys.stderr)
        return 2
    if not dry:
        torch.cuda.init()
    import transformers

    report = Report()
    gpu = torch.cuda.get_device_name(0) if cuda else "none (CPU dry run)"
    report.add("setup", "device", gpu, f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
               if cuda else platform.processor() or platform.machine())
    report.add("setup", "versions", f"torch {torch.__version__}, transformers {transformers.__version__}, "
               f"vllm {vllm_version or '-'}", f"python {platform.python_version()}")
    register_game()
    mem = Memory(cuda)
    work = Path(tempfile.mkdtemp(prefix="opid-gpu-check-"))
    model_dir = args.model
    try:
        t0 = time.perf_counter()
        if model_dir is not None:
            from agents.models import resolve_model

            model_dir = resolve_model(model_dir)
        else:
            if dry:
                from agents.models import resolve_model

                model_dir = resolve_model("tiny")
            else:
                model_dir = str(build_small_qwen2(work / "small-qwen2"))
        import json

        cfg_json = json.loads((Path(model_dir) / "config.json").read_text())
        label = Path(model_dir).name if args.model else ("tiny" if dry else "small-qwen2 (random)")
        report.add("setup", "model", label,
                   f"{cfg_json.get('num_hidden_layers')} layers, hidden {cfg_json.get('hidden_size')}, "
                   f"vocab {cfg_json.get('vocab_size')}; built in {time.perf_counter() - t0:.1f}s")
    except Exception as exc:  # nothing else can run without a model
        report.fail("setup", exc)
        traceback.print_exc()
        return finish(report, args, gpu, start)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("generation", lambda: generation_step(report, mem, model_dir, args, cuda, use_vllm)),
        ("grpo step", lambda: training_step(report, mem, "grpo", model_dir, args, cuda, use_vllm, work)),
        ("opid step", lambda: training_step(report, mem, "opid", model_dir, args, cuda, use_vllm, work)),
    ]
    for name, fn in steps:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget:
            report.add(name, "skipped", f"time budget ({args.budget:.0f}s) spent", f"at {elapsed:.0f}s")
            report.failed.append(name)
            continue
        print(f"gpu_check: {name} ... ({elapsed:.0f}s so far)", file=sys.stderr, flush=True)
        try:
            fn()
        except Exception as exc:
            traceback.print_exc()
            report.fail(name, exc)
        free_cuda()
    if cuda:
        report.add("memory", "GPU peak in use GiB (all allocators)", mem.device_peak,
                   "total - free, sampled after each step")
    return finish(report, args, gpu, start)


def finish(report: Report, args: Any, gpu: str, start: float) -> int:
    report.add("total", "wall s", time.perf_counter() - start,
               "all steps passed" if not report.failed else f"failed: {', '.join(report.failed)}")
    mode = "dry run (CPU)" if args.dry_run else "GPU"
    text = (f"# opid-gym GPU check, {mode}, {datetime.date.today().isoformat()}, {gpu}\n"
            f"# command: python benchmarks/gpu_check.py {' '.join(sys.argv[1:])}\n{report.table()}\n")
    print(text)
    if not args.no_save:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower() or "cpu"
        path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / \
            f"gpu_check_{datetime.date.today().isoformat()}_{'dry-run' if args.dry_run else slug}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"written to {path}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
