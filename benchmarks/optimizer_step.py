"""One AdamW step over a model's parameters: torch's default (multi-tensor) kernel against
the fused one the trainers take where it applies (``opid_gym.trainer.adamw``), side by side.

Both optimisers get the same gradients; the steps alternate over ``--repeats`` rounds (the
first is a warm-up and not counted) and the median is printed, with the largest difference
between the two parameter sets after all the steps.

    python benchmarks/optimizer_step.py                 # SmolLM2-135M (the demo's model)
    python benchmarks/optimizer_step.py --model tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args(argv)

    import torch

    from agents.hf import HFOptions, HFPolicy
    from opid_gym.config import OptimConfig
    from opid_gym.trainer import adamw

    policy = HFPolicy.from_pretrained(args.model, HFOptions(device="cpu"))
    start = [p.detach().clone() for p in policy.model.parameters() if p.requires_grad]
    sets = {name: [torch.nn.Parameter(t.clone()) for t in start] for name in ("default", "fused")}
    cfg = OptimConfig(lr=1e-5)
    opts = {"default": torch.optim.AdamW(sets["default"], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                         weight_decay=cfg.weight_decay),
            "fused": adamw(sets["fused"], cfg)}
    assert opts["fused"].defaults["fused"], "the trainers' AdamW is not fused here"
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in sets}
    for round_ in range(args.repeats):
        grads = [torch.randn(t.shape, generator=gen) * 1e-3 for t in start]
        for name, params in sets.items():
            for p, g in zip(params, grads):
                p.grad = g
            t0 = time.perf_counter()
            opts[name].step()
            if round_ > 0:
                times[name].append(time.perf_counter() - t0)
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(sets["default"], sets["fused"]))
    n = sum(t.numel() for t in start)
    print(f"{args.model}: {n / 1e6:.1f}M parameters, {torch.get_num_threads()} threads; "
          f"median of {len(times['fused'])} AdamW steps after a warm-up")
    base = statistics.median(times["default"])
    for name in sets:
        t = statistics.median(times[name])
        print(f"{name:<8}{t:>8.3f} s{base / t:>8.2f}x")
    print(f"largest parameter difference after {args.repeats} steps: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
