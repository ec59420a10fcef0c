"""Supervised fine-tuning from demonstrations (``sft``) and RL from a run's weights (``run:``).

The counting game (tests/support/envs.py) has an expert ("up" until the target), and
the tiny random-init model trains in seconds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import opid_gym
from agents.scripted import ExpertAgent, expert_reasoning
from opid_gym.benchmark import Benchmark
from opid_gym.cli import main
from opid_gym.history import make_history
from opid_gym.learner import build_step_batch
from opid_gym.parsing import get_parser
from opid_gym.rollout import make_groups, run_episodes
from opid_gym.workers import make_pool

BENCH = "counting-sft"
TRAIN_ID, EVAL_ID = "counting-sft-train", "counting-sft-eval"
SFT_ARGS = ["sft", "--env", BENCH, "--agent", "expert", "--preset", "smoke", "--set", "steps=3",
            "--set", "rollout.tasks_per_step=3", "--set", "rollout.group_size=1", "--set", "optim.lr=3e-3",
            "--set", "optim.mini_batch_size=4", "--set", "rollout.max_new_tokens=24", "--set", "env.max_steps=5",
            "--no-progress"]


def _register() -> None:
    import gymnasium

    from opid_gym.registry import full_env_id

    for name in (TRAIN_ID, EVAL_ID):
        if full_env_id(name) not in gymnasium.registry:
            opid_gym.register_env(name, "tests.support.envs:CountingEnv", kwargs={"tasks": 3})
    bench = Benchmark(BENCH, f"opid/{EVAL_ID}", f"opid/{TRAIN_ID}", max_steps=5, history_length=1,
                      max_prompt_tokens=256, max_new_tokens=24, description="counting game (sft tests)")
    opid_gym.BENCHMARKS.register(BENCH, bench, bench.description, replace=True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    _register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    _register()
    out = tmp_path_factory.mktemp("sft") / "run"
    assert main([*SFT_ARGS, "--out", str(out)]) == 0
    return out


def _cfg(run_dir: Path):
    from opid_gym.run_folder import load_run_config

    return load_run_config(run_dir)


def _demonstrations(policy, cfg, tasks=(0, 1, 2)):
    """The expert's steps on ``tasks`` as the sft run rolls them out (one batch)."""
    from learners.sft import DemonstrationAgent
    from opid_gym.registry import env_class
    from opid_gym.train import run_benchmark

    bench = run_benchmark(cfg)
    cls = env_class(bench.train_env_id)
    agent = DemonstrationAgent(ExpertAgent(), policy, bench.max_prompt_tokens)
    with make_pool(bench.train_env_id, bench.train_kwargs(), with_expert=True) as pool:
        trajs = run_episodes(pool, agent, make_groups(list(tasks), 1, 7), env_id=bench.train_env_id,
                             template=cls.prompt, action_format=cls.action_format,
                             history=make_history("window", length=bench.history_length))
    return trajs, build_step_batch(trajs)


def _nll(policy, batch) -> float:
    with torch.no_grad():
        res = policy.forward_logprobs(batch.prompt_ids, batch.response_ids)
    return float(-(res.logprobs * res.mask).sum() / res.mask.sum())


# ------------------------------------------------------------------ item 1: sft
@pytest.mark.slow
def test_sft_run_lowers_the_loss_on_its_demonstrations_and_loads_with_run(sft_run):
    from opid_gym.agent import make_agent
    from opid_gym.train import make_policy

    cfg = _cfg(sft_run)
    assert cfg.learner_name == "sft" and cfg.learner.demonstrator == "expert"
    base = make_policy(cfg)  # the tiny model's deterministic initialisation
    trained = make_agent(f"run:{sft_run}")  # the checkpoint loads through run:
    assert trained.learner == "sft" and trained.step == 3
    _, batch = _demonstrations(base, cfg)
    before, after = _nll(base, batch), _nll(trained.generator, batch)
    assert after < 0.7 * before, (before, after)
    records = [json.loads(line) for line in (sft_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[-1]["loss/nll"] < records[0]["loss/nll"]
    assert all(r["rollout/success_rate"] == 1.0 for r in records)  # the expert wins every game
    summary = json.loads((sft_run / "summary.json").read_text())
    assert summary["learner"] == "sft" and summary["final_eval"]["episodes"] == 2


def test_demonstrations_are_formatted_exactly_as_the_rl_prompt(tmp_path):
    """Same task and reset seed: the expert's steps carry the prompt the policy's own
    rollout builds (messages and tokens), and a response in the env's action format."""
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.config import resolve_config
    from opid_gym.registry import env_class
    from opid_gym.train import make_policy, run_benchmark

    cfg = resolve_config("sft", BENCH, preset="smoke")
    policy = make_policy(cfg)
    demo_trajs, batch = _demonstrations(policy, cfg, tasks=(1,))
    bench = run_benchmark(cfg)
    cls = env_class(bench.train_env_id)
    own = ModelAgent(policy, SamplingParams(max_new_tokens=4, max_prompt_tokens=bench.max_prompt_tokens))
    with make_pool(bench.train_env_id, bench.train_kwargs()) as pool:
        [rl] = run_episodes(pool, own, make_groups([1], 1, 7), env_id=bench.train_env_id, template=cls.prompt,
                            action_format=cls.action_format,
                            history=make_history("window", length=bench.history_length))
    demo_step, rl_step = demo_trajs[0].steps[0], rl.steps[0]
    assert demo_step.prompt == rl_step.prompt  # same template, history manager, observation
    assert demo_step.prompt_token_ids == rl_step.prompt_token_ids  # same chat template and truncation
    assert batch.prompt_ids[0] == rl_step.prompt_token_ids
    parse = get_parser(cls.action_format)
    for step, response_ids in zip(demo_trajs[0].steps, batch.response_ids):
        assert parse(step.response).valid and parse(step.response).action == "up" and step.valid
        assert response_ids == policy.encode_response(step.response)
        assert response_ids[-1] in policy.eos_ids and policy.decode(response_ids) == step.response
    # later steps: the history manager's view of the expert's own past steps
    assert "[Action 1: up]" in demo_trajs[0].steps[1].prompt[-1]["content"]


def test_sft_loss_is_on_response_tokens_only():
    """The learner's loss equals a hand-written cross-entropy over the response tokens
    of the full (prompt + response) sequence, with every prompt position masked out."""
    from learners.sft import SFT
    from opid_gym.config import resolve_config
    from opid_gym.learner import LossInputs
    from opid_gym.train import make_policy

    cfg = resolve_config("sft", BENCH, preset="smoke")
    policy = make_policy(cfg)
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]]
    responses = [[20, 21, 22], [30, 31]]
    res = policy.forward_logprobs(prompts, responses)
    mask = res.mask.float()
    learner = SFT(SFT.Config(), None)  # type: ignore[arg-type]  # the loss needs no run info
    out = learner.loss(LossInputs(logp=res.logprobs, old_logp=torch.zeros_like(mask), mask=mask,
                                  advantages=mask.clone(), num_tokens=float(mask.sum())))
    total, count = 0.0, 0
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logits = policy.module(input_ids=ids).logits[0].float()
        labels = torch.tensor(p + r)
        labels[: len(p)] = -100  # prompt tokens: no loss
        total += float(torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=-100,
                                                         reduction="sum"))
        count += len(r)
    assert float(out.loss.detach()) == pytest.approx(total / count, rel=1e-4)
    # only_won: the samples of lost episodes weigh nothing
    from learners.sft import demonstration_weights

    w = demonstration_weights(torch.tensor([True, False]), mask, only_won=True)
    assert w[0].sum() == mask[0].sum() and w[1].sum() == 0


# ------------------------------------------------------------ item 2: run:<dir>
@pytest.mark.slow
def test_rl_run_from_run_starts_from_its_final_weights(sft_run, tmp_path):
    """--model run:<sft run>: the policy and the KL's reference are the sft run's final
    weights at step 0, and the run trains on from there."""
    from opid_gym.checkpoint import find_latest, load_checkpoint
    from opid_gym.config import resolve_config
    from opid_gym.train import Run

    cfg = resolve_config("grpo", BENCH, preset="smoke", model=f"run:{sft_run}",
                         set_items=["rollout.max_new_tokens=8", "steps=1"])
    _, objects = load_checkpoint(find_latest(sft_run / "checkpoints"))
    final = objects["trainer"]["model"]
    run = Run(cfg, tmp_path / "rl", quiet=True)
    run._setup()
    state = run.parts.trainer.module.state_dict()
    ref = run.parts.trainer.ref.module.state_dict()
    assert set(state) == set(final)
    for name, value in final.items():
        assert torch.equal(state[name], value), name
        assert torch.equal(ref[name], value), name  # π_ref = the starting weights
    # a whole run from it, through the CLI; its config names the source run
    out = tmp_path / "rl-cli"
    assert main(["run", "--learner", "grpo", "--env", BENCH, "--preset", "smoke", "--model", f"run:{sft_run}",
                 "--set", "rollout.max_new_tokens=8", "--set", "steps=1", "--no-progress", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["name"] == f"run:{sft_run.resolve()}"


def test_bad_demonstrator_and_bad_source_run_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["sft", "--env", BENCH, "--agent", "nosuchagent", "--preset", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "demonstrator 'nosuchagent'" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["run", "--learner", "grpo", "--env", BENCH, "--preset", "smoke", "--model",
                 f"run:{tmp_path / 'nowhere'}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run:" in err and "Traceback" not in err
    assert not out.exists()


def test_sft_env_may_name_a_training_split():
    from opid_gym.sft import training_benchmark

    assert training_benchmark("alfworld-train") == "alfworld-unseen"
    assert training_benchmark(BENCH) == BENCH


# ---------------------------------------------------------- expert reasoning
def test_expert_reasoning_states_the_plans_sub_goal_only():
    plan = ["go to desk 2", "take alarmclock 1 from desk 2", "go to desk 1", "use desklamp 1"]
    assert expert_reasoning("go to desk 2", plan) == "Sub-goal: take alarmclock 1 from desk 2. First go to desk 2."
    assert expert_reasoning("take alarmclock 1 from desk 2", plan[1:]) == "Sub-goal: take alarmclock 1 from desk 2."
    assert expert_reasoning("use desklamp 1", plan[3:]) == "Sub-goal: use desklamp 1. It completes the plan."
    assert expert_reasoning("go to desk 1", ["go to desk 1", "go to desk 2"]) == "Sub-goal: go to desk 1."
    assert expert_reasoning("look", None) == "The expert plan's next step: look."


@pytest.mark.slow
def test_alfworld_expert_plan_and_short_plan_filter(alfworld_data):
    """ALFWorld's expert carries its remaining plan; its reasoning names the next sub-goal;
    max_plan_length keeps only games whose walkthrough fits."""
    from environments.alfworld.env import ALFWorldEnv
    from opid_gym.agent import AgentRequest

    env = ALFWorldEnv("valid_unseen", data_root=alfworld_data, max_plan_length=4)
    assert len(env.games) == 34 and all(g.plan_length <= 4 for g in env.games)
    try:
        _, info = env.reset(seed=0, options={"task_index": 0})
        plan = list(info["expert_plan"])
        assert env.unwrapped.expert_plan() == plan
        req = AgentRequest(messages=[], seed=0, step=0, observation="", admissible_actions=None,
                           expert_action=plan[0], action_format="think_action_lower",
                           info={"expert_plan_rest": plan})
        [reply] = ExpertAgent().act([req])
        parsed = get_parser("think_action_lower")(reply.text)
        assert parsed.valid and parsed.action == plan[0] and plan[1] in parsed.think
        env.step(plan[0])
        assert env.unwrapped.expert_plan() == plan[1:]
        env.step("look")  # off the plan: no plan any more
        assert env.unwrapped.expert_plan() is None
    finally:
        env.close()


def test_saved_trajectories_replay_as_demonstrations(tmp_path):
    """saved:<file>: trajectories saved by eval/run are replayed step by step; the prompts
    are rendered afresh, the responses are the saved ones; unknown tasks give no samples."""
    from agents.replay import make_agent as make_replay
    from learners.sft import DemonstrationAgent
    from opid_gym.config import resolve_config
    from opid_gym.evaluate import write_trajectories
    from opid_gym.registry import env_class
    from opid_gym.train import make_policy, run_benchmark

    cfg = resolve_config("sft", BENCH, preset="smoke", set_items=["env.max_steps=5"])
    policy = make_policy(cfg)
    expert_trajs, expert_batch = _demonstrations(policy, cfg, tasks=(0, 1))
    write_trajectories(tmp_path / "eval" / "trajectories.jsonl", expert_trajs)
    bench = run_benchmark(cfg)
    cls = env_class(bench.train_env_id)
    agent = DemonstrationAgent(make_replay(str(tmp_path / "eval")), policy, bench.max_prompt_tokens)
    with make_pool(bench.train_env_id, bench.train_kwargs()) as pool:
        trajs = run_episodes(pool, agent, make_groups([0, 1, 2], 1, 7), env_id=bench.train_env_id,
                             template=cls.prompt, action_format=cls.action_format,
                             history=make_history("window", length=bench.history_length))
    batch = build_step_batch(trajs)
    assert [t.won for t in trajs] == [True, True, False]  # task 2 was never saved
    assert batch.response_ids == expert_batch.response_ids and batch.prompt_ids == expert_batch.prompt_ids
    assert all(not s.response_token_ids for s in trajs[2].steps)
    assert main(["sft", "--env", BENCH, "--agent", f"saved:{tmp_path / 'none'}", "--preset", "smoke",
                 "--out", str(tmp_path / "r")]) == 2


def test_the_demo_warm_start_trains_the_top_blocks_and_rl_starts_from_it_with_every_weight(tmp_path):
    from opid_gym.demo import DEMO_BENCHMARK, demo_configs

    sft, rl = demo_configs("opid", DEMO_BENCHMARK, tmp_path / "sft", rl_set=["steps=5"])
    assert sft.learner_name == "sft" and rl.learner_name == "opid"
    assert sft.model.train_top_layers == 15 and rl.model.train_top_layers is None
    assert rl.model.name == f"run:{(tmp_path / 'sft').resolve()}" and rl.steps == 5
    assert sft.optim.micro_batch_size < sft.optim.mini_batch_size  # rows of like length per forward
    assert sft.model.autocast == rl.model.autocast == "bfloat16" and sft.eval.limit == rl.eval.limit == 20
