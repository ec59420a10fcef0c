"""OPID: skill injection, routing, teacher scoring, the update, and whole runs."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from learners.grpo import GRPO
from learners.opid import OPID, OPIDConfig, RoutedSkill, route_step, skill_advantage
from learners.skills.analyzer import Analysis, rules_analysis
from learners.skills.inject import EPISODE_USE, STEP_USE, inject_skill, insert_episode_skill, insert_step_skill, \
    skill_block
from opid_gym.benchmark import Benchmark
from opid_gym.cli import main
from opid_gym.config import OptimConfig
from opid_gym.learner import LearnerConfig, RunInfo, StepContext, build_step_batch
from opid_gym.types import Step, Trajectory
from tests.support import letters as toyenv

EP = "Find the mug first, then the coffee machine."
ADV = "Take the mug now."


# ------------------------------------------------------------- injection
class ScriptAgent:
    """Step 0 follows the expert plan; then an action with no effect twice; then an unreadable reply."""

    name, needs_expert = "script", False

    def act(self, requests):
        from opid_gym.agent import AgentReply

        out = []
        for r in requests:
            if r.step == 0:
                text = f"<think>start</think><action>{r.info['expert_plan'][0]}</action>"
            elif r.step in (1, 2):
                text = "<think>try it</think><action>go to moon 1</action>"
            else:
                text = "I will just wander around."
            out.append(AgentReply(text))
        return out


@pytest.fixture(scope="module")
def alfworld_traj(alfworld_data):
    from environments.alfworld.prompt import ALFWORLD_PROMPT
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import EpisodeSpec, run_episodes
    from opid_gym.workers import InProcessPool

    with InProcessPool("opid/alfworld-unseen", {"data_root": str(alfworld_data), "max_steps": 4}) as pool:
        (traj,) = run_episodes(pool, ScriptAgent(), [EpisodeSpec(0, 7, "g0")], env_id="opid/alfworld-unseen",
                               template=ALFWORLD_PROMPT, action_format="think_action", history=WindowHistory(2))
    return traj


EP_BLOCK = f"**Episode lesson**\n{EPISODE_USE}:\n[{EP}]"
STEP_BLOCK = f"**Advice for this step**\n{STEP_USE}:\n[{ADV}]"


def test_skill_blocks_are_headed_with_a_use_line_and_the_skill_in_brackets():
    # the reference's structure: "**heading**", "<how to use it>:", "[<skill>]"
    assert skill_block("episode", f"  {EP}\n") == EP_BLOCK
    assert skill_block("step", ADV) == STEP_BLOCK
    for block in (EP_BLOCK, STEP_BLOCK):
        head, use, body = block.split("\n")
        assert head.startswith("**") and head.endswith("**") and use.endswith(":") and body.startswith("[")


def test_injection_positions_on_real_alfworld_prompts(alfworld_traj):
    from environments.alfworld.prompt import ALFWORLD_PROMPT as T

    task = alfworld_traj.task
    assert task == "examine the alarmclock with the desklamp."
    task_line = f"Your task is to: {task}"
    for step in alfworld_traj.steps:
        text = step.prompt_text
        ep = insert_episode_skill(text, T, task, EP, step.observation)
        assert ep.anchored
        if step.index == 0:
            # the first observation restates the task: the block goes after THAT line (the reference's
            # placement at ALFWorld's first step), framed by one blank line on each side
            assert task_line in step.observation
            at = text.rindex(task_line) + len(task_line)
        else:  # later steps: after the task line under the intro
            assert task_line not in step.observation
            at = text.index(task_line) + len(task_line)
        before, after = text[:at], text[at:]
        assert ep.text == before + "\n\n" + EP_BLOCK + "\n\n" + after.lstrip("\n")
        st = insert_step_skill(text, T, ADV)
        assert st.anchored
        body = text[: -len(T.instruction)]
        assert st.text == body.rstrip("\n") + "\n\n" + STEP_BLOCK + "\n\n" + T.instruction
        assert st.text.split("\n")[-5:] == [*STEP_BLOCK.split("\n"), "", T.instruction]


def test_rules_analyzer_on_a_real_alfworld_trajectory(alfworld_traj):
    steps = alfworld_traj.steps
    assert steps[1].next_observation == "Nothing happens." and steps[2].action == steps[1].action
    assert not steps[3].valid
    a = rules_analysis(alfworld_traj, 5)
    assert set(a.step_skills) == {1, 2, 3}  # step 0 followed the expert plan
    assert a.step_skills[2].startswith("Do not try 'go to moon 1' again: it already failed at step 1")
    assert a.step_skills[3].startswith("Follow the response format exactly")
    assert a.episode_skill.startswith("This look task failed:")
    assert "Failed again and again: 'go to moon 1'." in a.episode_skill
    assert "never visited: " in a.episode_skill            # the places ALFWorld listed that were not reached
    assert " -> ".join(alfworld_traj.expert_plan) not in a.episode_skill  # hindsight only, no expert


def test_injection_fallbacks_and_messages():
    from environments.alfworld.prompt import ALFWORLD_PROMPT as T

    bare = "Some rewritten prompt without anchors."
    assert insert_step_skill(bare, T, ADV).text == bare + "\n\n" + STEP_BLOCK
    assert not insert_step_skill(bare, T, ADV).anchored
    no_task = "Intro.\nAt step 1, you observe: x\n" + T.instruction
    got = insert_episode_skill(no_task, T, "do y.", EP)   # no task line: before the instruction
    assert not got.anchored
    assert got.text == "Intro.\nAt step 1, you observe: x\n\n" + EP_BLOCK + "\n\n" + T.instruction
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "old turn"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "Your task is to: do y.\n" + T.instruction}]
    out, anchored = inject_skill(msgs, T, "do y.", "episode", EP)
    assert anchored and out[:3] == msgs[:3] and msgs[3]["content"].startswith("Your task")  # input untouched
    assert out[3]["content"] == f"Your task is to: do y.\n\n{EP_BLOCK}\n\n" + T.instruction
    # the task line ends the text: the block follows after one blank line
    assert insert_episode_skill("Your task is to: do y.", T, "do y.", EP).text == f"Your task is to: do y.\n\n{EP_BLOCK}"
    out, anchored = inject_skill([{"role": "assistant", "content": "a"}], T, "do y.", "step", ADV)
    assert not anchored and out[-1] == {"role": "user", "content": STEP_BLOCK}


# --------------------------------------------------------------- routing
A = Analysis("s", EP, {1: ADV, 4: "Put it down."})


@pytest.mark.parametrize("route, step, expected", [
    ("critical_first", 1, [RoutedSkill("step", ADV, 0.2)]),
    ("critical_first", 4, [RoutedSkill("step", "Put it down.", 0.2)]),
    ("critical_first", 0, [RoutedSkill("episode", EP, 0.1)]),
    ("critical_first", 2, [RoutedSkill("episode", EP, 0.1)]),
    ("additive", 1, [RoutedSkill("step", ADV, 0.2), RoutedSkill("episode", EP, 0.1)]),
    ("additive", 3, [RoutedSkill("episode", EP, 0.1)]),
    ("episode_only", 1, [RoutedSkill("episode", EP, 0.1)]),
])
def test_routing_table(route, step, expected):
    assert route_step(step, A, route, 0.1, 0.2) == expected


def test_routing_failed_analysis_and_zero_weights():
    assert route_step(1, None, "critical_first", 0.1, 0.2) == []
    # the reference's step_priority: with a zero step weight a critical step falls back to the episode skill
    assert route_step(1, A, "critical_first", 0.1, 0.0) == [RoutedSkill("episode", EP, 0.1)]
    assert route_step(1, A, "additive", 0.1, 0.0) == [RoutedSkill("episode", EP, 0.1)]
    blank = Analysis("s", EP, {1: "  "})                 # a blank step skill is no step skill
    assert route_step(1, blank, "critical_first", 0.1, 0.2) == [RoutedSkill("episode", EP, 0.1)]
    # a zero episode weight is listed (the caller skips scoring it); critical steps keep their step skill
    assert route_step(0, A, "critical_first", 0.0, 0.2) == [RoutedSkill("episode", EP, 0.0)]
    assert route_step(1, A, "critical_first", 0.0, 0.2) == [RoutedSkill("step", ADV, 0.2)]
    # the skill advantage of a zero weight is exactly zero
    t, o = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(skill_advantage(t, o, torch.ones(2, 3), torch.zeros(2)).abs(), torch.zeros(2, 3))
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    got = skill_advantage(torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -7.0, -7.0]]),
                          torch.tensor([[-1.5, -1.0, -1.0], [-0.25, -1.0, -1.0]]), m, torch.tensor([0.001, 2.0]))
    assert torch.allclose(got, torch.tensor([[0.0005, -0.001, 0.0], [-0.5, 0.0, 0.0]]))


# -------------------------------------------------- the tiny model, scoring
@pytest.fixture(scope="module")
def tiny_policy():
    pytest.importorskip("transformers")
    from agents.hf import HFOptions, HFPolicy

    return HFPolicy.from_pretrained("tiny", HFOptions(device="cpu"))


@pytest.fixture(scope="module")
def toy_trajs(tiny_policy):
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.workers import InProcessPool

    toyenv.register()
    agent = ModelAgent(tiny_policy, SamplingParams(temperature=1.0, max_new_tokens=6, max_prompt_tokens=256))
    with InProcessPool("letters-train", {"max_steps": 2}) as pool:
        trajs = run_episodes(pool, agent, make_groups([0, 1, 2], 3, seed=11), env_id="letters-train",
                             template=toyenv.TOY_PROMPT, action_format="think_action", history=WindowHistory(1))
    assert sum(t.length for t in trajs) > len(trajs), "some episodes should have two steps"
    return trajs


def toy_run(run_dir=None, prompt_limit=256) -> RunInfo:
    bench = Benchmark("letters", "opid/letters-eval", "opid/letters-train", max_steps=2)
    return RunInfo(benchmark=bench, family="toy", template=toyenv.TOY_PROMPT, action_format="think_action",
                   run_dir=run_dir, max_prompt_tokens=prompt_limit)


def setup(policy, trajs, *, micro=4, keep_ref=False, prompt_limit=256, source="recompute", logs=None):
    from opid_gym.train import make_step_context
    from opid_gym.trainer import LocalTrainer

    trainer = LocalTrainer(policy, OptimConfig(lr=1e-2, weight_decay=0.0, micro_batch_size=micro, mini_batch_size=5),
                           total_steps=1, keep_ref=keep_ref)
    batch = build_step_batch(trajs)
    width = batch.mask.shape[1]
    batch.old_logp = (batch.sampler_logp if source == "sampler"
                      else trainer.score(batch.prompt_ids, batch.response_ids, width=width))
    if keep_ref:
        batch.ref_logp = trainer.score(batch.prompt_ids, batch.response_ids, which="ref", width=width)
    sink = logs if logs is not None else {}
    ctx = make_step_context(0, toy_run(prompt_limit=prompt_limit), trainer, batch, prompt_limit, sink.update,
                            old_logp_source=source)
    return trainer, batch, ctx


def single_logp(policy, messages, response_ids):
    ids, _ = policy.encode_chat(messages, 256)
    with torch.no_grad():
        return policy.forward_logprobs([ids], [response_ids]).logprobs[0]


def test_skill_advantage_equals_separately_scored_difference(tiny_policy, toy_trajs):
    cfg = OPIDConfig(episode_skill_weight=1.0, step_skill_weight=0.5, max_step_skills=1, kl_coef=0.0, entropy_coef=0.0)
    learner = OPID(cfg, toy_run())
    logs = {}
    _, batch, ctx = setup(tiny_policy, toy_trajs, logs=logs)
    learner.prepare(batch, ctx)
    adv = batch.extras["skill_adv"]
    kinds = []
    for i in range(len(batch)):
        traj = batch.trajectories[int(batch.traj_index[i])]
        analysis = rules_analysis(traj, 1)
        t = int(batch.step_index[i])
        content = batch.messages[i][-1]["content"]
        if t in analysis.step_skills:  # built here by plain string replacement, independently of inject.py
            weight, kinds = 0.5, kinds + ["step"]
            instruction = toyenv.TOY_PROMPT.instruction
            block = f"**Advice for this step**\n{STEP_USE}:\n[{analysis.step_skills[t]}]"
            skilled = content.replace("\n" + instruction, f"\n\n{block}\n\n{instruction}")
        else:
            weight, kinds = 1.0, kinds + ["episode"]
            line = f"Your task is to: {batch.task[i]}"
            block = f"**Episode lesson**\n{EPISODE_USE}:\n[{analysis.episode_skill}]"
            skilled = content.replace(line + "\n", f"{line}\n\n{block}\n\n", 1)
        assert skilled != content
        resp = batch.response_ids[i]
        expected = weight * (single_logp(tiny_policy, [{"role": "user", "content": skilled}], resp)
                             - single_logp(tiny_policy, batch.messages[i], resp))
        n = len(resp)
        assert torch.allclose(adv[i, :n], expected, atol=2e-5), i
        assert torch.all(adv[i, n:] == 0)
        assert not torch.allclose(adv[i, :n], torch.zeros(n), atol=1e-4)  # the skill changed something
        assert batch.annotations[i]["skill_route"] == kinds[-1]
    # the letters toy answers "Try again." (an effect), so hindsight-rules finds nothing wrong at most steps;
    # step routes are covered by the routing-table and injection tests
    assert "episode" in set(kinds)
    assert logs["opid/routed_step_frac"] == pytest.approx(kinds.count("step") / len(kinds))
    assert logs["opid/routed_episode_frac"] == pytest.approx(kinds.count("episode") / len(kinds))
    assert logs["opid/skill_adv_absmax"] == pytest.approx(float(adv.abs().max()))
    assert logs["opid/skill_adv_mean"] == pytest.approx(float(adv[batch.mask > 0].mean()), abs=1e-7)
    assert logs["opid/analyzer_failures"] == 0 and logs["opid/skill_prompts"] == len(batch)


@pytest.mark.parametrize("source", ["recompute", "sampler"])
def test_identical_prompts_give_exactly_zero_skill_advantage(tiny_policy, toy_trajs, monkeypatch, source):
    """ℓ_old is the same scorer as ℓ_skill: an injection that changes nothing gives exactly 0."""
    import learners.opid as opid_module

    monkeypatch.setattr(opid_module, "inject_skill", lambda messages, *a: ([dict(m) for m in messages], True))
    learner = OPID(OPIDConfig(episode_skill_weight=1.0, step_skill_weight=1.0), toy_run())
    _, batch, ctx = setup(tiny_policy, toy_trajs, source=source)
    learner.prepare(batch, ctx)
    assert torch.equal(batch.extras["skill_adv"], torch.zeros_like(batch.mask))


def test_prompt_truncations_are_counted(tiny_policy, toy_trajs):
    learner = OPID(OPIDConfig(), toy_run())
    logs = {}
    _, batch, ctx = setup(tiny_policy, toy_trajs, prompt_limit=4096, logs=logs)
    learner.prepare(batch, ctx)
    assert logs["opid/prompt_truncations"] == 0 and logs["opid/anchor_missing"] == 0
    _, batch, ctx = setup(tiny_policy, toy_trajs, prompt_limit=40, logs=logs)  # shorter than any skill prompt
    learner.prepare(batch, ctx)
    assert logs["opid/prompt_truncations"] == len(batch) == logs["opid/skill_prompts"]


def test_annotations_for_the_trajectory_viewer(tiny_policy, toy_trajs):
    learner = OPID(OPIDConfig(), toy_run())
    _, batch, ctx = setup(tiny_policy, toy_trajs)
    learner.prepare(batch, ctx)
    for i, ann in enumerate(batch.annotations):
        n = len(batch.response_ids[i])
        assert len(ann["skill_adv"]) == n == len(ann["response_tokens"])
        assert ann["skill_adv"] == pytest.approx(batch.extras["skill_adv"][i, :n].tolist(), rel=1e-5, abs=1e-12)
        assert ann["routed_skill"].startswith(("step skill: ", "episode skill: "))
        assert json.dumps(ann)  # JSON-able


def one_update(policy, state0, trajs, learner):
    """One training step's update (as the loop does it) from the given initial weights."""
    policy.module.load_state_dict(state0)
    trainer, batch, ctx = setup(policy, trajs, micro=3, keep_ref=True)
    learner.prepare(batch, ctx)
    adv = torch.nan_to_num(learner.advantages(batch, ctx).detach().float()) * batch.mask
    trainer.update(batch, adv, learner, step=0)
    return {k: v.detach().clone() for k, v in policy.module.state_dict().items()}


def test_zero_skill_weights_update_equals_grpo_bitwise(tiny_policy, toy_trajs):
    state0 = copy.deepcopy(tiny_policy.module.state_dict())
    try:
        grpo = one_update(tiny_policy, state0, toy_trajs, GRPO(LearnerConfig(), toy_run()))
        zero = one_update(tiny_policy, state0, toy_trajs,
                          OPID(OPIDConfig(episode_skill_weight=0.0, step_skill_weight=0.0), toy_run()))
        full = one_update(tiny_policy, state0, toy_trajs,
                          OPID(OPIDConfig(episode_skill_weight=1.0, step_skill_weight=1.0), toy_run()))
    finally:
        tiny_policy.module.load_state_dict(state0)
    assert any(not torch.equal(grpo[k], state0[k]) for k in grpo), "the update changed nothing"
    assert all(torch.equal(grpo[k], zero[k]) for k in grpo)
    assert any(not torch.equal(grpo[k], full[k]) for k in grpo)


def _step(i, valid=True, reward=0.0):
    return Step(index=i, observation="o", prompt=[{"role": "user", "content": "p"}], response="r", action="a",
                valid=valid, next_observation="", reward=reward, terminated=False, truncated=False,
                prompt_token_ids=[1], response_token_ids=[5, 6], response_logprobs=[-1.0, -1.0])


def test_advantages_add_the_skill_term_and_count_zero_groups():
    def t(tid, g, m, won):
        return Trajectory(tid, "e", 0, "x", "y", "task", 1, g, m, [_step(0, reward=10.0 if won else 0.0)], won=won)

    batch = build_step_batch([t("a", "g0", 0, True), t("b", "g0", 1, False), t("c", "g1", 0, False),
                              t("d", "g1", 1, False), t("e", "g2", 0, True), t("f", "g2", 1, True)])
    skill = torch.full_like(batch.mask, 0.25)
    batch.extras["skill_adv"] = skill
    logs = {}
    ctx = StepContext(0, toy_run(), lambda *a: None, lambda *a: None, logs.update)
    got = OPID(OPIDConfig(), toy_run()).advantages(batch, ctx)
    grpo = GRPO(LearnerConfig(), toy_run()).advantages(batch, ctx)
    assert torch.equal(got, grpo + skill)
    assert logs["opid/zero_adv_group_frac"] == pytest.approx(2 / 3)  # g1 all lose, g2 all win


def test_failed_analyses_give_no_skill_signal(tiny_policy, toy_trajs):
    pytest.importorskip("httpx")
    from tests.support.openai_server import ChatServer, Reply

    with ChatServer(default=Reply("I refuse.")) as server:
        cfg = OPIDConfig(analyzer="openai", analyzer_model="m", analyzer_base_url=server.base_url,
                         analyzer_retries=1, analyzer_http_retries=0, episode_skill_weight=1.0)
        learner = OPID(cfg, toy_run())
        logs = {}
        _, batch, ctx = setup(tiny_policy, toy_trajs, logs=logs)
        learner.prepare(batch, ctx)
    n_traj = len(batch.trajectories)
    assert torch.equal(batch.extras["skill_adv"], torch.zeros_like(batch.mask))
    assert logs["opid/analyzer_failures"] == n_traj and logs["opid/analyzer_calls"] == 2 * n_traj
    assert logs["opid/routed_none_frac"] == 1.0 and logs["opid/skill_prompts"] == 0
    assert batch.annotations[0]["routed_skill"].startswith("none (analysis failed: unparsable answer")


def test_teacher_advantage_normalise_and_clip_and_the_opd_loss(tiny_policy, toy_trajs, request):
    """The reference's normalize_teacher_adv / clip_teacher_adv per teacher kind, and the OPD term."""
    from learners.opid import OPD_ROWS, OPD_TEACHER
    from opid_gym.learner import LossInputs

    pytest.importorskip("httpx")
    from tests.support.openai_server import ChatServer, Reply

    # one fixed analysis for every trajectory: an episode skill and a step skill at step 0, so
    # step 0 is routed to its step skill and a second step to the episode skill (both kinds occur)
    answer = json.dumps({"episode_summary": "s", "episode_skill": "Read the task word first.",
                         "step_skills": {"0": "Type the letter the task names."}})
    server = ChatServer(default=Reply(answer)).start()
    request.addfinalizer(server.stop)
    weights = {"episode_skill_weight": 1.0, "step_skill_weight": 1.0, "max_step_skills": 1,
               "analyzer": "openai", "analyzer_model": "m", "analyzer_base_url": server.base_url}
    plain = OPID(OPIDConfig(**weights), toy_run())
    _, batch, ctx = setup(tiny_policy, toy_trajs)
    plain.prepare(batch, ctx)
    raw = batch.extras["skill_adv"]  # λ = 1: Δ = ℓ_skill − ℓ_old per token
    assert OPD_TEACHER not in batch.extras  # the OPD loss is off by default (coefficient 0)
    kinds = [a["skill_route"] for a in batch.annotations]
    assert set(kinds) == {"step", "episode"}
    mask = batch.mask > 0
    expected = torch.zeros_like(raw)
    for kind in ("step", "episode"):  # each kind normalised over its own rows' valid tokens
        rows = torch.tensor([k == kind for k in kinds])[:, None] & mask
        values = raw[rows]
        expected[rows] = (values - values.mean()) / (values.std(unbiased=False) + 1e-6)
    learner = OPID(OPIDConfig(**weights, normalize_teacher_adv=True, opd_loss_coef=0.5), toy_run())
    _, batch2, ctx2 = setup(tiny_policy, toy_trajs)
    learner.prepare(batch2, ctx2)
    assert torch.allclose(batch2.extras["skill_adv"], expected, atol=1e-5)
    clipped = OPID(OPIDConfig(**weights, clip_teacher_adv=0.01), toy_run())
    _, batch3, ctx3 = setup(tiny_policy, toy_trajs)
    clipped.prepare(batch3, ctx3)
    assert torch.allclose(batch3.extras["skill_adv"], raw.clamp(-0.01, 0.01), atol=1e-7)
    # OPD: the routed teacher's log-probs on every analysed row; Δ = teacher − old = the raw skill advantage
    assert batch2.extras[OPD_ROWS].tolist() == [1.0] * len(batch2)
    assert torch.allclose((batch2.extras[OPD_TEACHER] - batch2.old_logp) * batch2.mask, raw, atol=1e-6)
    # the loss adds 0.5 · token_mean(−Δ·logπθ) over the OPD rows (A = 0 and no KL/entropy here)
    quiet = OPIDConfig(**weights, opd_loss_coef=0.5, kl_coef=0.0, entropy_coef=0.0)
    n = 2
    teacher = torch.tensor([[-0.5, -2.4], [-1.0, -1.0]])
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -3.0]], requires_grad=True)
    inputs = LossInputs(logp=logp, old_logp=torch.tensor([[-1.2, -2.0], [-3.0, -3.0]]), mask=torch.ones(n, 2),
                        advantages=torch.zeros(n, 2), num_tokens=4.0,
                        extras={OPD_TEACHER: teacher, OPD_ROWS: torch.tensor([1.0, 0.0])})
    out = OPID(quiet, toy_run()).loss(inputs)
    # row 0: Δ = (0.7, −0.4) → −Δ·logp = 0.7 − 0.8 = −0.1; row 1 not an OPD row → 0; / 4 tokens · 0.5
    assert out.metrics["loss/opd"] == pytest.approx(0.5 * -0.1 / 4, abs=1e-7)
    assert float(out.loss.detach()) == pytest.approx(0.5 * -0.1 / 4, abs=1e-7)
    assert out.metrics["opd/active_token_frac"] == pytest.approx(0.5)
    off = OPID(OPIDConfig(**weights, kl_coef=0.0, entropy_coef=0.0), toy_run()).loss(inputs)
    assert "loss/opd" not in off.metrics and float(off.loss.detach()) == 0.0


def test_defaults_and_config_errors(tmp_path):
    bench = Benchmark("b", "opid/x", "opid/x", max_steps=3, invalid_penalty=0.01)
    from opid_gym.family import family_of

    assert OPID.default_config(bench, family_of("searchqa")).max_step_skills == 2
    assert OPID.default_config(bench, family_of("alfworld-unseen")).max_step_skills == 5
    cfg = OPID.default_config(bench, family_of("webshop-eval"))
    assert (cfg.adv_norm, cfg.episode_skill_weight, cfg.step_skill_weight, cfg.gamma, cfg.route) == (
        "mean_norm", 0.001, 0.001, 0.95, "critical_first")
    from opid_gym.learner import ConfigError

    with pytest.raises(ConfigError, match="unknown analyzer"):
        OPIDConfig(analyzer="gpt4")
    with pytest.raises(ConfigError, match="analyzer_model"):
        OPIDConfig(analyzer="openai")
    with pytest.raises(ConfigError, match="route"):
        OPIDConfig(route="sometimes")  # type: ignore[arg-type]
    assert (cfg.normalize_teacher_adv, cfg.clip_teacher_adv, cfg.opd_loss_coef, cfg.opd_loss_weight_mode,
            cfg.opd_loss_clip) == (False, None, 0.0, "delta", None)  # the reference trainer's defaults
    with pytest.raises(ConfigError, match="opd_loss_coef"):
        OPIDConfig(opd_loss_coef=-1.0)
    with pytest.raises(ConfigError, match="clip_teacher_adv"):
        OPIDConfig(clip_teacher_adv=0.0)
    with pytest.raises(ConfigError, match="key file not found"):
        OPIDConfig(analyzer="openai:m", analyzer_api_key_file=str(tmp_path / "none"))


# ------------------------------------------------------------- whole runs
TOY = ["--learner", "opid", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
       "--set", "rollout.group_size=3", "--no-progress"]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    toyenv.register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


METRIC_KEYS = ["opid/analyzer_calls", "opid/analyzer_tokens_in", "opid/analyzer_tokens_out", "opid/analyzer_failures",
               "opid/analyzer_latency", "opid/skill_adv_mean", "opid/skill_adv_std", "opid/skill_adv_absmax",
               "opid/routed_step_frac", "opid/routed_episode_frac", "opid/zero_adv_group_frac",
               "opid/prompt_truncations"]


def test_run_with_the_rules_analyzer(tmp_path, isolated):
    out = tmp_path / "run"
    assert main(["run", *TOY, "--set", "route=additive", "--out", str(out)]) == 0
    records = _metrics(out)
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert all(k in r and math.isfinite(r[k]) for k in METRIC_KEYS)
        assert r["opid/analyzer_calls"] == 0 and r["opid/analyzer_failures"] == 0
    assert json.loads((out / "config.json").read_text())["learner"]["route"] == "additive"
    lines = (out / "analyzer" / "analyses.jsonl").read_text().splitlines()
    assert len(lines) == sum(r["opid/analyzer_trajectories"] for r in records)
    trajs = [json.loads(line) for line in (out / "rollouts" / "step_000001.jsonl").read_text().splitlines()]
    anns = [a for t in trajs for a in t["annotations"].values()]
    assert anns and all({"routed_skill", "skill_adv", "response_tokens"} <= set(a) for a in anns)
    # evaluation is the plain policy: no skill text in any evaluation prompt
    evals = (out / "eval" / "final" / "trajectories.jsonl").read_text()
    assert evals and "**Episode lesson**" not in evals and "**Advice for this step**" not in evals


def test_run_with_an_openai_analyzer_key_from_a_file_and_resume_reuses_analyses(tmp_path, isolated):
    pytest.importorskip("httpx")
    from tests.support.analyzer_server import AnalyzerReplies
    from tests.support.openai_server import ChatServer

    key = tmp_path / "key.txt"
    key.write_text("sk-VERY-SECRET\n")
    out = tmp_path / "run"
    with ChatServer(default=AnalyzerReplies(garbage_every=4)) as server:
        args = [*TOY, "--set", "analyzer=openai", "--set", f"learner.analyzer_base_url={server.base_url}",
                "--set", "learner.analyzer_model=judge", "--set", f"learner.analyzer_api_key_file={key}",
                "--out", str(out)]
        assert main(["run", *args]) == 0
        first = _metrics(out)
        asked = len(server.requests)
        assert asked == sum(r["opid/analyzer_calls"] for r in first) > 0
        assert server.requests[0].headers["Authorization"] == "Bearer sk-VERY-SECRET"
        assert all(r["opid/analyzer_failures"] == 0 for r in first)   # garbage answers were re-asked
        assert sum(r["opid/analyzer_retries"] for r in first) >= 1
        # the key is in no file of the run folder
        assert not [p for p in out.rglob("*") if p.is_file() and b"VERY-SECRET" in p.read_bytes()]
        # lose the last step (as a kill after step 1's checkpoint would), then resume: no analyzer calls again
        shutil.rmtree(out / "checkpoints" / "step_000002")
        (out / "checkpoints" / "latest").write_text("step_000001")
        (out / "summary.json").unlink()
        assert main(["resume", str(out), "--no-progress"]) == 0
        assert len(server.requests) == asked
    again = _metrics(out)
    assert again[1]["opid/analyzer_cache_hits"] == first[1]["opid/analyzer_trajectories"]
    assert again[1]["opid/analyzer_calls"] == 0
    assert again[1]["opid/skill_adv_mean"] == first[1]["opid/skill_adv_mean"]


def test_analyzer_server_timeouts_leave_the_run_going(tmp_path, isolated):
    pytest.importorskip("httpx")
    from tests.support.openai_server import ChatServer, Reply, Sleep

    out = tmp_path / "run"
    with ChatServer(default=Sleep(1.0, then=Reply("late"))) as server:
        assert main(["run", *TOY, "--set", "analyzer=openai:judge", "--set", f"analyzer_base_url={server.base_url}",
                     "--set", "analyzer_timeout=0.2", "--set", "analyzer_http_retries=0",
                     "--out", str(out)]) == 0
    records = _metrics(out)
    for r in records:
        assert r["opid/analyzer_failures"] == r["opid/analyzer_trajectories"] > 0
        assert r["opid/skill_adv_absmax"] == 0.0 and r["opid/routed_none_frac"] == 1.0
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--set", "analyzer=gpt"], "unknown analyzer 'gpt'"),
    (["--set", "analyzer=openai"], "analyzer_model"),
    (["--set", "route=sometimes"], "route must be one of"),
    (["--set", "learner.analyzer_api_key_file=/nonexistent/key"], "key file not found"),
])
def test_bad_opid_settings_are_clear_errors(tmp_path, capsys, isolated, extra, message):
    out = tmp_path / "run"
    if "key" in message:
        extra = extra + ["--set", "analyzer=openai:m"]
    assert main(["run", *TOY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "config.json").exists()
