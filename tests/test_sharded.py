"""Sharded training (FSDP2 under torchrun) equals one process; the launcher; the Ray pool setting.

The two slow tests start real torchrun jobs of 2 CPU processes talking over gloo on
127.0.0.1 (a free port each time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from opid_gym import distributed
from opid_gym.config import ConfigError, resolve_config
from opid_gym.distributed import DistInfo, torchrun_argv
from opid_gym.rollout import RolloutStats
from opid_gym.launch import _child_argv, _run_argv
from opid_gym.train import gather_rollouts
from tests.support import letters

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(module_args: list[str], module: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = torchrun_argv(module_args, 2, module=module)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ equivalence
@pytest.mark.slow
def test_two_gloo_processes_with_fsdp_equal_one_process(tmp_path):
    """3 updates on a fixed batch: parameters, π_old / π_ref scores and metrics agree."""
    pytest.importorskip("transformers")
    from tests.support import fsdp_equivalence

    fsdp_equivalence.main("local", str(tmp_path / "local.pt"))  # in this process, LocalTrainer
    proc = _torchrun(["fsdp", str(tmp_path / "fsdp.pt")], "tests.support.fsdp_equivalence")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = torch.load(tmp_path / "local.pt", weights_only=False)
    two = torch.load(tmp_path / "fsdp.pt", weights_only=False)

    from agents.hf import HFOptions, HFPolicy

    initial = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu")).model.state_dict()
    assert sorted(one["weights"]) == sorted(two["weights"]) == sorted(initial)
    diff = max((one["weights"][k] - two["weights"][k]).abs().max().item() for k in initial)
    moved = max((one["weights"][k] - initial[k]).abs().max().item() for k in initial)
    print(f"max |param(2 procs) - param(1 proc)| = {diff:.3g}; max |update| = {moved:.3g}")
    assert moved > 1e-2          # the 3 updates changed the model...
    assert diff < 1e-4           # ...and both runs changed it the same way (float summation order only)
    for (old1, ref1), (old2, ref2) in zip(one["scores"], two["scores"]):
        torch.testing.assert_close(old2, old1, atol=1e-5, rtol=0)
        torch.testing.assert_close(ref2, ref1, atol=1e-5, rtol=0)
    for m1, m2 in zip(one["metrics"], two["metrics"]):
        assert m1.keys() == m2.keys()
        for key in m1:  # grad_norm: the loss scaling by world size; losses: the global token count
            assert m2[key] == pytest.approx(m1[key], rel=1e-4, abs=1e-6), key
    # each rank sampled its own prompts with gathered (unsharded) weights: same tokens as one process
    assert two["samples"] == one["samples"]
    # checkpoint round trip: full state on rank 0, loaded back, the next update is repeated exactly
    rt = two["roundtrip"]
    assert rt["state_keys"] == sorted(initial)
    for k in initial:
        assert torch.equal(rt["restored"][k], two["weights"][k])
        assert torch.equal(rt["again"][k], rt["first"][k])


@pytest.mark.slow
def test_run_with_nproc_2_matches_one_process_and_resumes_exactly(tmp_path, monkeypatch):
    """``opid-bench run --nproc 2`` (relaunched through torchrun) trains like one process;
    ``resume --nproc 2`` after losing the last checkpoint repeats the run bit for bit."""
    pytest.importorskip("transformers")
    from opid_gym.cli import main

    letters.register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    # optim.eps=1e-6: the first step's advantages can all be 0, leaving gradients of ~1e-8 per
    # weight, where Adam's g / (|g| + eps) turns float-rounding differences between one and
    # two processes into differences of a whole learning rate (seen: 8.8e-4 with eps 1e-8)
    args = ["run", "--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
            "--set", "rollout.group_size=3", "--set", "optim.lr=1e-3", "--set", "optim.micro_batch_size=2",
            "--set", "model.cpu_threads=1", "--set", "optim.eps=1e-6", "--no-progress"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--out", str(one)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.support.dist_cli", *args, "--out", str(two), "--nproc", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def metrics(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    def weights(run):
        return torch.load(run / "checkpoints" / "step_000002" / "trainer.pt", weights_only=False)["model"]

    m1, m2 = metrics(one), metrics(two)
    assert [r["step"] for r in m2] == [1, 2]
    for r1, r2 in zip(m1, m2):
        for key in ("rollout/tokens_generated", "rollout/env_steps", "rollout/success_rate", "rollout/samples"):
            assert r2[key] == r1[key], key            # the same episodes, sampled by 2 ranks
        for key in ("loss/pg", "kl", "entropy", "grad_norm"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), key
    w1, w2 = weights(one), weights(two)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    start = torch.load(one / "checkpoints" / "step_000001" / "trainer.pt", weights_only=False)["model"]
    assert max((w1[k] - start[k]).abs().max().item() for k in w1) > 1e-4  # step 2 moved the weights beyond that
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["budget"]["steps"] == 2
    assert (two / "eval" / "final" / "summary.json").is_file()

    # lose step 2 (as if killed just before its checkpoint), resume with 2 processes
    import shutil

    three = tmp_path / "three"
    shutil.copytree(two, three)
    shutil.rmtree(three / "checkpoints" / "step_000002")
    (three / "checkpoints" / "latest").write_text("step_000001")
    (three / "summary.json").unlink()
    lines = (three / "metrics.jsonl").read_text().splitlines()
    (three / "metrics.jsonl").write_text(lines[0] + "\n")
    proc = subprocess.run([sys.executable, "-m", "tests.support.dist_cli", "resume", str(three), "--no-progress",
                           "--nproc", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    strip = [{k: v for k, v in r.items() if not k.startswith("time")} for r in metrics(three)]
    assert strip == [{k: v for k, v in r.items() if not k.startswith("time")} for r in m2]
    w3 = weights(three)
    assert all(torch.equal(w3[k], w2[k]) for k in w2)


def test_train_top_layers_with_two_processes_moves_only_the_top_block(tmp_path, monkeypatch):
    """``model.train_top_layers`` under FSDP: the frozen weights come out of training unchanged."""
    pytest.importorskip("transformers")
    from agents.hf import HFOptions, HFPolicy

    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    out = tmp_path / "top"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.support.dist_cli", "run", "--learner", "grpo", "--env", "letters",
                           "--preset", "smoke", "--set", "rollout.max_new_tokens=8", "--set", "rollout.group_size=3",
                           "--set", "optim.lr=1e-3", "--set", "model.cpu_threads=1", "--set", "model.train_top_layers=1",
                           "--no-progress", "--out", str(out), "--nproc", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=str(tmp_path / "m"))).model.state_dict()
    final = torch.load(out / "checkpoints" / "step_000002" / "trainer.pt", weights_only=False)["model"]
    moved = {k for k in final if not torch.equal(final[k], start[k])}
    assert moved and all(k.startswith("model.layers.1.") or k == "model.norm.weight" for k in moved), sorted(moved)


# ------------------------------------------------------------------- pieces
def test_each_rank_takes_every_world_size_th_item():
    items = list(range(7))
    parts = [DistInfo(r, 3, r).shard(items) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert DistInfo().shard(items) == items and DistInfo().is_main and not DistInfo().enabled


def test_gathered_rollouts_come_back_in_episode_order():
    """One process: the gather puts this rank's trajectories at their episode indices."""
    trajs = ["t2", "t0", "t1"]
    stats_in = RolloutStats(env_steps=5, generated_tokens=7)
    ordered, stats = gather_rollouts(3, [2, 0, 1], trajs, stats_in)  # type: ignore[arg-type]
    assert ordered == ["t0", "t1", "t2"] and stats.env_steps == 5 and stats.generated_tokens == 7
    with pytest.raises(RuntimeError, match=r"episodes \[2\]"):
        gather_rollouts(3, [0, 1], ["a", "b"], RolloutStats())  # type: ignore[arg-type]


def test_one_process_collectives_are_the_identity():
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_object("x") == "x"
    distributed.barrier()


def test_launch_command_and_child_arguments(tmp_path):
    cmd = torchrun_argv(["run", "--learner", "grpo"], 4, port=29999)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "4" and cmd[cmd.index("--master-port") + 1] == "29999"
    assert cmd[-5:] == ["-m", "opid_gym", "run", "--learner", "grpo"]
    assert "--standalone" in torchrun_argv(["run"], 2) and "--master-port" not in torchrun_argv(["run"], 2)
    import argparse

    cfg = tmp_path / "c.json"
    args = argparse.Namespace(learner="grpo", env="letters", model="tiny", preset="smoke", config=str(cfg),
                              set_items=["optim.lr=1e-5"], no_progress=True, nproc=2, data_root="data",
                              results_db=None)
    argv = _child_argv(args, ["run", *_run_argv(args), "--out", "runs/x"])
    assert argv == ["--data-root", str(Path("data").resolve()), "run", "--learner", "grpo", "--env", "letters",
                    "--model", "tiny", "--preset", "smoke", "--config", str(cfg.resolve()), "--set", "optim.lr=1e-5",
                    "--out", "runs/x", "--no-progress"]
    assert "--nproc" not in argv  # torchrun's own parser would take it for --nproc-per-node


def test_bad_nproc_and_sharded_trainer_without_torchrun_are_clear_errors(tmp_path, capsys):
    pytest.importorskip("transformers")
    from opid_gym.cli import main

    letters.register()
    assert main(["run", "--learner", "grpo", "--env", "letters", "--preset", "smoke", "--nproc", "0",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err and not (tmp_path / "r").exists()

    from agents.hf import HFOptions, HFPolicy
    from opid_gym.config import OptimConfig
    from opid_gym.sharded import ShardedTrainer

    policy = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu"))
    with pytest.raises(RuntimeError, match="torchrun"):
        ShardedTrainer(policy, OptimConfig(), total_steps=1, keep_ref=False)


def test_ray_pool_setting_needs_workers():
    letters.register()
    with pytest.raises(ConfigError, match="env.workers >= 1"):
        resolve_config("grpo", "letters", preset="smoke", set_items=["env.pool=ray"])
    cfg = resolve_config("grpo", "letters", preset="smoke", set_items=["env.pool=ray", "env.workers=2",
                                                                  "env.ray_address=auto"])
    assert (cfg.env.pool, cfg.env.workers, cfg.env.ray_address) == ("ray", 2, "auto")
    with pytest.raises(ConfigError, match="env.pool"):
        resolve_config("grpo", "letters", preset="smoke", set_items=["env.pool=spark"])


def test_ray_pool_without_ray_is_a_clear_error_before_the_run_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    from opid_gym.cli import main

    letters.register()
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    out = tmp_path / "run"
    assert main(["run", "--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "env.pool=ray",
                 "--set", "env.workers=1", "--out", str(out)]) == 2
    assert "pip install 'opid-gym[ray]'" in capsys.readouterr().err and not out.exists()
