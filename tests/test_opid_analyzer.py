"""OPID's hindsight analyzer: parsing, the prompt, the rules analyzer, backends, retries, cache."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learners.skills.analyzer import (
    Analysis, AnalysisParseError, Analyzer, AnalyzerConfigError, AnalyzerSettings, build_analysis_messages,
    parse_analysis, rules_analysis, step_findings,
)
from learners.skills.analyzer.oracle import oracle_analysis
from learners.skills.analyzer.rules import coverage, critical_findings, generalise, loop_start
from opid_gym.types import Step, Trajectory


# ------------------------------------------------------------------ helpers
def step(i, action="go to desk 1", *, valid=True, nxt="You arrive at desk 1.", reward=0.0, obs=None, response=None,
         error=None):
    return Step(index=i, observation=obs if obs is not None else f"obs {i}",
                prompt=[{"role": "user", "content": f"prompt {i}"}],
                response=response if response is not None else f"<think>t</think><action>{action}</action>",
                action=action, valid=valid, next_observation=nxt, reward=reward, terminated=False, truncated=False,
                parse_error=error)


def traj(steps, *, won=False, plan=None, tid="t0", task="put a mug in desk.", task_type="pick", truncated=True):
    return Trajectory(traj_id=tid, env_id="opid/alfworld-train", task_index=0, task_id="x", task_type=task_type,
                      task=task, seed=1, group_id="g", member=0, steps=steps, won=won, truncated=truncated and not won,
                      terminated=won, expert_plan=plan)


# ------------------------------------------------------------------ parsing
SKILL = "Open the fridge before looking for food."
TABLE = [
    # (answer text, steps, K, expected step skills)
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"1": "a", "3": "b"}}' % SKILL, 5, 5,
     {1: "a", 3: "b"}),
    ('```json\n{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"0": "a"}}\n```' % SKILL, 5, 5,
     {0: "a"}),
    ('Sure! Here is the analysis you asked for:\n\n{"episode_summary": "s", "episode_skill": "%s", '
     '"step_skills": {"2": "a"}}\n\nLet me know if you need more.' % SKILL, 5, 5, {2: "a"}),
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"1": "a", "2": "b",},}' % SKILL, 5, 5,
     {1: "a", 2: "b"}),
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {1: "int key"}}' % SKILL, 5, 5, {1: "int key"}),
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"Step 4": "a", "step_2": "b"}}' % SKILL, 5, 5,
     {4: "a", 2: "b"}),
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"7": "out", "-1": "neg", "x": "bad", '
     '"1": "in"}}' % SKILL, 5, 5, {1: "in"}),
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"4": "a", "0": "b", "2": "c"}}' % SKILL, 5, 2,
     {4: "a", 0: "b"}),                                                   # the first K, in the order given
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": [{"step": 1, "skill": "a"}, '
     '{"step_index": "3", "advice": "b"}]}' % SKILL, 5, 5, {1: "a", 3: "b"}),
    ("{'episode_summary': 's', 'episode_skill': '%s', 'step_skills': {'1': 'python dict'}}" % SKILL, 5, 5,
     {1: "python dict"}),
    ('{"Episode Summary": "s", "Episode Skill": "%s", "Step Skills": {"0": "a", "1": ""}}' % SKILL, 5, 5,
     {0: "a"}),                                                           # key spelling; empty advice dropped
    ('{"episode_summary": "s", "episode_skill": "%s", "step_skills": {"1": "cut off by the tok' % SKILL, 5, 5,
     {1: "cut off by the tok"}),                                          # truncated answer is closed
    ('{"episode_summary": "s", "episode_skill": "%s"}' % SKILL, 5, 5, {}),  # no step skills: fine
    ('Thinking... {not json} then {"episode_skill": "%s", "step_skills": {"0": "a"}}' % SKILL, 3, 5, {0: "a"}),
]


@pytest.mark.parametrize("text, n, k, steps", TABLE)
def test_parse_real_looking_answers(text, n, k, steps):
    a = parse_analysis(text, n, k)
    assert a.episode_skill == SKILL
    assert a.step_skills == steps
    assert list(a.step_skills) == list(steps)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("I cannot help with that.", "no JSON object"),
    ('{"episode_summary": "s", "step_skills": {"0": "a"}}', "episode_skill"),
    ('{"episode_summary": "s", "episode_skill": "", "step_skills": {}}', "episode_skill"),
    ('{"episode_summary": "s", "episode_skill": 42}', "episode_skill"),
    ("[1, 2, 3]", "no JSON object"),
])
def test_parse_failures_say_why(text, reason):
    with pytest.raises(AnalysisParseError, match=reason):
        parse_analysis(text, 5, 5)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.integers(0, 40), st.integers(0, 6))
def test_fuzz_arbitrary_text_parses_or_fails_cleanly(text, n, k):
    try:
        a = parse_analysis(text, n, k)
    except AnalysisParseError:
        return
    assert a.episode_skill.strip()
    assert len(a.step_skills) <= k
    assert all(0 <= i < n and v.strip() for i, v in a.step_skills.items())


_advice = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "")


@settings(max_examples=200, deadline=None)
@given(skill=_advice, steps=st.dictionaries(st.integers(-3, 12), _advice, max_size=8), n=st.integers(1, 10),
       k=st.integers(0, 6), fence=st.booleans(), prose=st.booleans(), int_keys=st.booleans(),
       trailing=st.booleans())
def test_fuzz_decorated_answers_round_trip(skill, steps, n, k, fence, prose, int_keys, trailing):
    obj = {"episode_summary": "what happened", "episode_skill": skill,
           "step_skills": {str(i): v for i, v in steps.items()}}
    text = json.dumps(obj, ensure_ascii=False)
    if int_keys:
        text = re.sub(r'"(-?\d+)":', r"\1:", text)
    if trailing:
        text = text[:-1] + ",}"
    if fence:
        text = f"```json\n{text}\n```"
    if prose:
        text = f"Here you go.\n{text}\nDone."
    a = parse_analysis(text, n, k)
    expected = {}
    for i, v in steps.items():  # hand-applied rules: valid indices only, first K, whitespace collapsed
        if 0 <= i < n and len(expected) < k:
            expected[i] = " ".join(v.split())
    assert a.episode_skill == " ".join(skill.split())
    assert a.step_skills == expected


# ------------------------------------------------------------------- prompt
def test_prompt_shows_task_outcome_steps_and_discounted_returns():
    t = traj([step(0, obs="You are in a room."), step(1), step(2, reward=10.0)], won=True)
    (user,) = build_analysis_messages(t, gamma=0.95, max_step_skills=4)  # one user message, no system prompt
    text = user["content"]
    assert user["role"] == "user" and "JSON" in text
    assert "Task: put a mug in desk." in text and "Task type: pick" in text
    assert "Outcome: SUCCESS" in text and "SUCCEEDED" in text and "FAILED" not in text
    assert "Candidate step indices: 0, 1, 2" in text and "at most 4 step indices" in text
    assert ("### Step 0\nObservation: You are in a room.\n"
            "Response: <think>t</think><action>go to desk 1</action>") in text
    # G_t = r_t + 0.95 G_{t+1}: 10, 9.5, 9.025
    assert "Return G_0: 9.025" in text and "Return G_1: 9.5" in text and "Return G_2: 10" in text
    failed = build_analysis_messages(traj([step(0)]), retry_reason="no JSON object found",
                                     previous_answer="x" * 2500 + "tail")[0]["content"]
    assert "Outcome: FAILURE: the step limit was reached after 1 step(s)." in failed and "FAILED" in failed
    assert "previous answer could not be used (no JSON object found)" in failed
    # the end of the unusable answer comes back with the re-ask: its last 2000 characters
    assert failed.endswith("The end of your previous answer:\n" + ("x" * 1996 + "tail"))


def test_prompt_fields_are_unclipped_by_default():
    long = "A" * 5000 + "B" * 5000
    text = build_analysis_messages(traj([step(0, obs=long)]))[0]["content"]
    assert f"Observation: {long}\n" in text


def test_prompt_shortens_long_fields_in_the_middle():
    t = traj([step(0, obs="A" * 500 + "B" * 500)])
    text = build_analysis_messages(t, max_field_chars=100)[0]["content"]
    assert "A" * 50 + " […900 characters left out…] " + "B" * 50 in text


# ------------------------------------------------------------------- rules
def test_rules_flag_a_repeated_invalid_action():
    t = traj([
        step(0, "go to cabinet 1"),
        step(1, "go to moon 1", nxt="Nothing happens."),
        step(2, "go to desk 1"),
        step(3, "go to moon 1", nxt="Nothing happens."),          # the same failing action again
        step(4, "blah", valid=False, error="missing <action>…</action>", nxt="Nothing happens."),
    ])
    a = rules_analysis(t, max_step_skills=5)
    assert set(a.step_skills) == {1, 3, 4}
    assert a.step_skills[3].startswith("Do not try 'go to moon 1' again: it already failed at step 1")
    assert "Nothing happens." in a.step_skills[1]
    assert "could not be read as an action (missing <action>…</action>)" in a.step_skills[4]
    assert a.episode_summary.startswith("Failed after 5 step(s): 1 unreadable response(s), 1 action(s) with no effect")
    assert a.episode_skill.startswith("This pick task failed:")
    assert rules_analysis(t, 5) == a  # deterministic


def test_rules_repeated_unreadable_response_is_a_repeated_failure():
    t = traj([step(0, "xx", valid=False, error="missing <think>…</think>", nxt="Nothing happens."),
              step(1, "xx", valid=False, error="missing <think>…</think>", nxt="Nothing happens.")])
    kinds = {f.step: f.kind for f in step_findings(t)}
    assert kinds == {0: "invalid", 1: "repeated_failure"}


def test_rules_loops_the_k_limit_and_no_expert_plan():
    plan = ["go to fridge 1", "open fridge 1", "take mug 1 from fridge 1"]
    t = traj([
        step(0, "go to fridge 1", obs="room"),
        step(1, "look", obs="at fridge"),                          # leaves the plan here: not a finding
        step(2, "look", obs="at fridge"),                          # same action, same situation: loop
        step(3, "go to moon 1", obs="at fridge", nxt="Nothing happens."),
        step(4, "go to shelf 1", obs="x", nxt="Nothing happens."),
    ], plan=plan)
    kinds = {f.step: f.kind for f in step_findings(t)}
    assert kinds == {2: "loop", 3: "no_effect", 4: "no_effect"}
    # K = 2 keeps the most severe findings (the two with no effect), in step order
    assert [f.step for f in critical_findings(t, 2)] == [3, 4]
    assert list(rules_analysis(t, 2).step_skills) == [3, 4]
    assert rules_analysis(t, 0).step_skills == {}
    a = rules_analysis(t)
    # hindsight only: the environment's expert plan is never read (that is the oracle ablation)
    assert "open fridge 1" not in a.episode_skill and all("open fridge" not in v for v in a.step_skills.values())


def test_rules_success_gives_the_workflow_and_its_generalisation():
    t = traj([step(0, "go to fridge 1"), step(1, "go to moon", nxt="Nothing happens."), step(2, "open fridge 1"),
              step(3, "take mug 1 from fridge 1", reward=10.0)], won=True, task="put a mug in fridge.")
    a = rules_analysis(t)
    assert a.episode_skill.startswith(
        "This pick task was solved in 4 step(s) with: go to fridge 1 -> open fridge 1 -> take mug 1 from fridge 1. "
        "In general: go to <fridge> 1 -> open <fridge> 1 -> take <mug> 1 from <fridge> 1 (<word> = what the task "
        "names).")
    assert a.episode_summary.startswith("Succeeded after 4 step(s)")
    assert set(a.step_skills) == {1}  # only the step that went wrong is critical
    assert generalise("Take Mug 1 from  desk 2", "put a mug in desk.") == "take <mug> 1 from <desk> 2"


def test_rules_won_episode_off_the_plan_has_no_critical_step():
    t = traj([step(0, "go to desk 1"), step(1, "take mug 1 from desk 1", reward=10.0)], won=True,
             plan=["go to shelf 1", "take mug 1 from shelf 1"])
    assert step_findings(t) == [] and rules_analysis(t).step_skills == {}


def test_rules_format_advice_is_given_once_and_only_where_it_cost_the_step():
    t = traj([step(i, f"junk {i}", valid=False, error="missing <action>…</action>", nxt="Nothing happens.")
              for i in range(4)])
    assert [(f.step, f.kind) for f in step_findings(t)] == [(0, "invalid")]
    a = rules_analysis(t)
    assert list(a.step_skills) == [0] and "4 unreadable response(s)" in a.episode_summary
    # an unreadable response that the environment still executed is judged by what it did
    acted = traj([step(0, "pl", valid=False, error="missing <action>…</action>",
                       nxt="The plate cupboard opens, but you need the lamp.")], task="get the lamp for the desk.")
    b = rules_analysis(acted)
    assert step_findings(acted) == [] and b.step_skills == {}
    assert "1 response(s) broke the action format" in b.episode_skill
    assert "Tried without success: 'pl' -> \"The plate cupboard opens, but you need the lamp.\"" in b.episode_skill


def _adm(actions, *rest):
    return {"admissible_actions": list(actions), **dict(rest)}


def test_rules_lost_episode_lists_what_was_visited_missed_repeated_and_where_it_looped():
    adm = ["go to desk 1", "go to shelf 1", "go to drawer 1", "look", "take mug 1 from desk 1"]
    s = [step(0, "go to desk 1", obs="room", nxt="On the desk 1, you see a pen 1, and a mug 1."),
         step(1, "take pen 1 from desk 1", obs="On the desk 1, you see a pen 1, and a mug 1.", nxt="You take pen 1."),
         step(2, "go to moon 1", obs="You take pen 1.", nxt="Nothing happens."),
         step(3, "look", obs="You take pen 1.", nxt="You are at desk 1."),
         step(4, "look", obs="You take pen 1.", nxt="You are at desk 1."),        # loop began at step 3
         step(5, "go to moon 1", obs="You are at desk 1.", nxt="Nothing happens.")]  # repeated failure
    for x in s:
        x.info = _adm(adm)
    t = traj(s)
    cov = coverage(t)
    assert cov["visited"] == ["desk 1"] and cov["not_visited"] == ["shelf 1", "drawer 1"]
    assert cov["taken"] == ["pen 1"] and cov["not_taken"] == ["mug 1"]
    assert cov["untried"] == ["go to shelf 1", "go to drawer 1", "take mug 1 from desk 1"]
    assert loop_start(t) == (3, 4)
    a = rules_analysis(t)
    skill = a.episode_skill
    assert "Visited: desk 1; never visited: shelf 1, drawer 1." in skill
    assert "Objects taken: pen 1; seen but never taken: mug 1." in skill
    assert "Admissible actions never tried: go to shelf 1, go to drawer 1, take mug 1 from desk 1." in skill
    assert "Failed again and again: 'go to moon 1'." in skill
    assert "The agent began to loop at step 3 (step 4 repeated it in the same situation)." in skill
    # critical steps: only where something went wrong (no effect, loop, repeated failure), not steps 0, 1, 3
    assert set(a.step_skills) == {2, 4, 5}


def test_oracle_reads_the_experts_action_from_each_state_and_is_labelled_an_ablation():
    s = [step(0, "go to desk 1"), step(1, "go to shelf 1"), step(2, "look")]
    s[0].expert_action, s[1].expert_action, s[2].expert_action = "go to desk 1", "take mug 1 from desk 1", "Look"
    t = traj(s, plan=["go to desk 1", "take mug 1 from desk 1", "go to shelf 1"])
    a = oracle_analysis(t, 5)
    assert a.step_skills == {1: "Do 'take mug 1 from desk 1' now: it is the expert's next action from this exact "
                                "situation."}   # steps 0 and 2 agree with the expert (case-insensitively)
    assert "ablation" in a.episode_summary and "not the paper's method" in a.episode_summary
    assert "go to desk 1 -> take mug 1 from desk 1 -> go to shelf 1" in a.episode_skill
    assert oracle_analysis(t, 0).step_skills == {}
    # only the start-state plan: the first step off the plan, nothing after it (the plan no longer applies)
    bare = traj([step(0, "go to desk 1"), step(1, "go to shelf 1"), step(2, "look")],
                plan=["go to desk 1", "take mug 1 from desk 1"])
    assert list(oracle_analysis(bare).step_skills) == [1]
    with pytest.raises(ValueError, match="no expert information"):
        oracle_analysis(traj([step(0)]))


def test_oracle_analyzer_backend_needs_the_expert_and_counts_missing_ones(tmp_path):
    settings = AnalyzerSettings(kind="oracle")
    assert settings.backend == "oracle" and settings.needs_expert and not AnalyzerSettings().needs_expert
    with_expert = traj([step(0, "go to desk 1")], tid="a")
    with_expert.steps[0].expert_action = "go to shelf 1"
    an = Analyzer(settings, cache_dir=tmp_path)
    ok, missing = an.analyze([with_expert, traj([step(0)], tid="b")])
    assert ok.analysis == oracle_analysis(with_expert) and list(ok.analysis.step_skills) == [0]
    assert missing.analysis is None and "no expert information" in missing.error
    assert an.last.failures == 1 and an.last.calls == 0


# ---------------------------------------------------------------- settings
def test_settings_validation(tmp_path):
    with pytest.raises(AnalyzerConfigError, match="unknown analyzer"):
        AnalyzerSettings(kind="gpt").validate()
    with pytest.raises(AnalyzerConfigError, match="analyzer_model"):
        AnalyzerSettings(kind="openai").validate()
    with pytest.raises(AnalyzerConfigError, match="key file not found"):
        AnalyzerSettings(kind="openai:m", api_key_file=str(tmp_path / "nope")).validate()
    (tmp_path / "key").write_text("sk-secret\n")
    s = AnalyzerSettings(kind="openai", model="m", api_key_file=str(tmp_path / "key"))
    s.validate()
    assert s.api_key() == "sk-secret" and s.openai_model == "m"
    assert AnalyzerSettings(kind="openai:gpt-x").openai_model == "gpt-x"
    assert AnalyzerSettings(kind="hf:tiny").backend == "local"


# ----------------------------------------------------------------- service
httpx = pytest.importorskip("httpx")
from tests.support.analyzer_server import AnalyzerReplies  # noqa: E402
from tests.support.openai_server import ChatServer, Garbage, Hold, Reply, Sleep  # noqa: E402


def openai_settings(server, **kw):
    return AnalyzerSettings(kind="openai", model="judge", base_url=server.base_url,
                            **{"timeout": 5.0, "http_retries": 0, **kw})


def some_trajs(n=4):
    return [traj([step(0), step(1, "go to moon", nxt="Nothing happens."), step(2)], tid=f"s0g0-m{i}") for i in range(n)]


def test_openai_analyzer_concurrency_usage_and_parsing():
    with ChatServer(default=AnalyzerReplies()) as server:
        server.script(*[Hold(2, timeout=2.0, then=AnalyzerReplies()) for _ in range(4)])
        an = Analyzer(openai_settings(server, concurrency=2))
        results = an.analyze(some_trajs(4))
    assert all(r.analysis is not None and r.error is None for r in results)
    assert server.max_in_flight == 2
    body = server.requests[0].body
    # the reference's call: one user message, no temperature field (the endpoint's default), 4096 tokens
    assert body["model"] == "judge" and "temperature" not in body and body["max_tokens"] == 4096
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert "Candidate step indices: 0, 1, 2" in body["messages"][0]["content"]
    s = an.last
    assert (s.trajectories, s.calls, s.failures, s.retries) == (4, 4, 0, 0)
    assert s.tokens_in > 0 and s.tokens_out > 0 and s.seconds > 0


def test_garbage_is_retried_with_a_stricter_instruction_then_counted():
    good = Reply(json.dumps({"episode_summary": "s", "episode_skill": "Do it.", "step_skills": {"1": "x"}}))
    with ChatServer(default=Reply("no idea")) as server:
        server.script(Reply("no idea"), good)           # trajectory 0: garbage, then a good answer
        an = Analyzer(openai_settings(server))         # the default: 2 attempts, as the reference
        r = an.analyze(some_trajs(1))[0]
        assert r.analysis == Analysis("s", "Do it.", {1: "x"}) and r.attempts == 2
        retry_prompt = server.requests[1].body["messages"][0]["content"]
        assert "previous answer could not be used (no JSON object found in the answer)" in retry_prompt
        assert retry_prompt.endswith("The end of your previous answer:\nno idea")
        server.reset()
        results = an.analyze(some_trajs(3))            # always garbage: 1 + retries attempts, then failure
    assert all(x.analysis is None and "unparsable" in x.error for x in results)
    assert len(server.requests) == 6
    assert (an.last.failures, an.last.parse_failures, an.last.retries, an.last.calls) == (3, 6, 3, 6)


def test_timeouts_and_broken_servers_are_failures_not_crashes():
    with ChatServer(default=Sleep(1.5, then=Reply("late"))) as server:
        an = Analyzer(openai_settings(server, timeout=0.3, retries=2))
        results = an.analyze(some_trajs(2))
    assert all(r.analysis is None and "ChatTimeoutError" in r.error for r in results)
    assert an.last.failures == 2 and an.last.retries == 0  # transport failures are not re-asked
    with ChatServer(default=Garbage(b"<html>oops</html>")) as server:
        an = Analyzer(openai_settings(server))
        assert all("ChatResponseError" in r.error for r in an.analyze(some_trajs(2)))
    an = Analyzer(AnalyzerSettings(kind="openai", model="m", base_url="http://127.0.0.1:9/v1", http_retries=0,
                                   timeout=1.0))
    assert all("ChatConnectionError" in r.error for r in an.analyze(some_trajs(1)))


def test_cache_reuses_successes_across_instances(tmp_path):
    trajs = some_trajs(3)
    with ChatServer(default=AnalyzerReplies()) as server:
        server.script(Reply("garbage"))                # the first trajectory fails (retries=0)
        first = Analyzer(openai_settings(server, retries=0, concurrency=1), cache_dir=tmp_path).analyze(trajs)
        assert [r.analysis is None for r in first] == [True, False, False]
        server.reset()
        again = Analyzer(openai_settings(server, retries=0), cache_dir=tmp_path)   # a resumed run
        second = again.analyze(trajs)
        assert len(server.requests) == 1               # only the failed one is asked again
        assert again.last.cache_hits == 2 and [r.cached for r in second] == [False, True, True]
        assert [r.analysis for r in second[1:]] == [r.analysis for r in first[1:]]
        changed = some_trajs(3)
        changed[1].steps[0].response = "something else"  # same id, other content: not a hit
        server.reset()
        again.analyze(changed)
        assert len(server.requests) == 1 and again.last.cache_hits == 2
    lines = (tmp_path / "analyses.jsonl").read_text().splitlines()
    # successes only: m1, m2 (first run), m0 (second run), the changed m1 (third run)
    assert [json.loads(line)["traj_id"] for line in lines] == ["s0g0-m1", "s0g0-m2", "s0g0-m0", "s0g0-m1"]


def test_rules_analyzer_needs_no_model(tmp_path):
    an = Analyzer(AnalyzerSettings(max_step_skills=2), cache_dir=tmp_path)
    results = an.analyze(some_trajs(2))
    assert [r.analysis for r in results] == [rules_analysis(t, 2) for t in some_trajs(2)]
    assert an.last.calls == 0 and an.last.failures == 0


def test_local_hf_analyzer_runs_and_counts(tmp_path):
    pytest.importorskip("transformers")
    an = Analyzer(AnalyzerSettings(kind="hf:tiny", device="cpu", max_new_tokens=8, retries=1, max_prompt_tokens=512))
    results = an.analyze(some_trajs(2))
    # the random-init tiny model writes no JSON: every answer fails, is retried once, and is counted
    assert all(r.analysis is None and r.error.startswith("unparsable answer") for r in results)
    assert (an.last.calls, an.last.retries, an.last.failures) == (4, 2, 2)
    assert an.last.tokens_out == 4 * 8 and an.last.tokens_in > 0


def test_policy_analyzer_uses_the_given_generate():
    from opid_gym.backend import Generation

    seen = {}

    def generate(prompts, params, seeds):
        seen["n"], seen["params"] = len(prompts), params
        text = '{"episode_skill": "Be quick.", "step_skills": {"0": "Go."}}'
        return [Generation(text, [1, 2], [3], [-0.5]) for _ in prompts]

    an = Analyzer(AnalyzerSettings(kind="policy", max_new_tokens=77))
    assert an.analyze(some_trajs(1))[0].error.startswith("RuntimeError")   # no generate given: a counted failure
    results = an.analyze(some_trajs(3), generate=generate)
    assert all(r.analysis == Analysis("", "Be quick.", {0: "Go."}) for r in results)
    # no temperature set: the API default, 1.0
    assert seen["n"] == 3 and seen["params"].max_new_tokens == 77 and seen["params"].temperature == 1.0
    assert (an.last.tokens_in, an.last.tokens_out) == (6, 3)
