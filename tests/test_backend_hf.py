"""The transformers backend on the tiny model: scoring, sampling, training hooks, the agent.

Reference values come from a plain forward over one unpadded sequence at a time
(``_reference_logprobs``), written here independently of the backend's packing code.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.hf import HFOptions, HFPolicy, length_buckets, top_p_filter  # noqa: E402
from agents.model_agent import AgentOptionError, ModelAgent  # noqa: E402
from opid_gym.agent import AgentRequest  # noqa: E402
from opid_gym.backend import Generator, SamplingParams, Scorer, TrainablePolicy  # noqa: E402

TOL = 1e-5
GEN_TOL = 1e-4
"""Sampler log-probs come from the incremental (KV-cache) forward, scores from one full
forward: the same math summed in another order, equal to ~1e-5 in float32, so a looser
bound for that comparison."""
LORA_GEN_TOL = 2e-3
"""The same comparison after an SGD step of lr 1 on the adapters, whose larger logits carry
larger float32 errors: 1e-6 on this project's CPU, 3.5e-4 on a CI machine with another CPU.
The adapters move these log-probs by ~1 to 3, so the bound still tells with from without."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def policy(cache_dir) -> HFPolicy:
    return HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir))


def _reference_logprobs(policy: HFPolicy, prompt: list[int], response: list[int]) -> list[float]:
    """log p(response | prompt) from one unpadded forward, no masks, no packing."""
    with torch.no_grad():
        logits = policy.module(torch.tensor([prompt + response])).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt) - 1:-1], dim=-1)
    return logp.gather(-1, torch.tensor(response)[:, None]).squeeze(-1).tolist()


def _pairs(policy: HFPolicy):
    eos = policy.tokenizer.eos_token_id
    texts = ["go to desk 1", "take apple 2 from countertop 3 and put it in the fridge", "hi"]
    prompts = [policy.encode_chat([{"role": "user", "content": t}])[0] for t in texts]
    enc = lambda s: policy.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # responses of different lengths, ending with the EOS id, which is also the pad id
    responses = [enc("<think>ok</think><action>look</action>") + [eos], enc("open") + [eos, eos], [eos]]
    return prompts, responses


def test_protocols_are_implemented(policy):
    assert isinstance(policy, Generator) and isinstance(policy, Scorer) and isinstance(policy, TrainablePolicy)


def test_pad_is_eos_on_tiny_like_smollm2(policy):
    # the tests below only guard the "masks from lengths" rule if this holds
    assert policy.tokenizer.pad_token_id == policy.tokenizer.eos_token_id


def test_score_matches_unpadded_reference(policy):
    prompts, responses = _pairs(policy)
    scored = policy.score(prompts, responses)
    for p, r, s in zip(prompts, responses, scored):
        assert len(s) == len(r)
        assert s == pytest.approx(_reference_logprobs(policy, p, r), abs=TOL)


def test_batched_score_equals_one_at_a_time(policy):
    prompts, responses = _pairs(policy)
    batched = policy.score(prompts, responses)
    single = [policy.score([p], [r])[0] for p, r in zip(prompts, responses)]
    for b, s in zip(batched, single):
        assert b == pytest.approx(s, abs=TOL)


def test_length_buckets_cover_every_pair_once_and_bound_padding():
    lengths = [(100, 5), (10, 5), (98, 6), (12, 40), (11, 4), (100, 5), (9, 3), (50, 50)]
    buckets = length_buckets(lengths, max_batch=3, max_waste=0.25)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for b in buckets:
        assert 1 <= len(b) <= 3
        real = sum(p + r for p, r in (lengths[i] for i in b))
        padded = len(b) * (max(lengths[i][0] for i in b) + max(lengths[i][1] for i in b))
        assert padded <= 1.25 * real
    assert [0, 5, 2] in buckets  # the long prompts go together, longest first
    assert [3] in buckets and [7] in buckets  # a long response is not padded onto short ones
    assert length_buckets([(5, 5)] * 5, max_batch=2) == [[0, 1], [2, 3], [4]]
    assert length_buckets([], max_batch=8) == []


def test_bucketed_batch_scoring_equals_batch_one(cache_dir):
    """Many pairs of very different lengths, scored with batch 8 (bucketed) and batch 1."""
    batch8 = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir, score_batch_size=8))
    batch1 = HFPolicy(batch8.model, batch8.tokenizer, HFOptions(device="cpu", score_batch_size=1))
    prompts, responses = _pairs(batch8)
    eos = batch8.tokenizer.eos_token_id
    prompts = prompts * 4 + [prompts[1] + prompts[0]] * 2
    responses = responses + responses[::-1] + [r + [eos] * k for k, r in enumerate(responses)] \
        + responses + responses[:2]
    buckets = length_buckets([(len(p), len(r)) for p, r in zip(prompts, responses)], 8)
    assert any(len(b) > 1 for b in buckets) and len(buckets) > 1  # the test covers real buckets
    batched = batch8.score(prompts, responses)
    single = batch1.score(prompts, responses)
    assert [len(b) for b in batched] == [len(r) for r in responses]
    for b, s in zip(batched, single):
        assert b == pytest.approx(s, abs=TOL)


def test_score_one_response_under_two_prompts(policy):
    prompts, responses = _pairs(policy)
    response = responses[0]
    plain = prompts[0]
    skilled = policy.encode_chat([{"role": "system", "content": "Skill: open the drawer first."},
                                  {"role": "user", "content": "go to desk 1"}])[0]
    both = policy.score([plain, skilled], [response, response])
    assert both[0] == pytest.approx(_reference_logprobs(policy, plain, response), abs=TOL)
    assert both[1] == pytest.approx(_reference_logprobs(policy, skilled, response), abs=TOL)
    assert max(abs(a - b) for a, b in zip(*both)) > 1e-3  # the prompt matters


def test_forward_logprobs_masks_padding_and_has_gradients(policy):
    prompts, responses = _pairs(policy)
    res = policy.forward_logprobs(prompts, responses, entropy=True)
    B, L = len(prompts), max(map(len, responses))
    assert res.logprobs.shape == res.mask.shape == res.entropy.shape == (B, L)
    assert res.mask.sum(-1).tolist() == [float(len(r)) for r in responses]
    assert (res.logprobs[res.mask == 0] == 0).all() and (res.entropy[res.mask == 0] == 0).all()
    # entropy of the first response token, recomputed from the reference distribution
    with torch.no_grad():
        logits = policy.module(torch.tensor([prompts[0]])).logits[0, -1].float()
    p = torch.softmax(logits, -1)
    assert res.entropy[0, 0].item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-4)
    assert 0 < res.entropy[0, 0].item() <= math.log(logits.numel())
    policy.module.zero_grad()
    (-(res.logprobs * res.mask).sum()).backward()
    grads = [q.grad for q in policy.module.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    policy.module.zero_grad()


def test_generation_reproducible_under_seed_and_independent_of_batch(policy):
    msgs = [[{"role": "user", "content": "go to desk 1"}],
            [{"role": "user", "content": "take apple 2 from countertop 3, then put it in fridge 1"}],
            [{"role": "user", "content": "hi"}]]
    sp = SamplingParams(temperature=1.0, max_new_tokens=10)
    a = policy.generate(msgs, sp, seeds=[11, 12, 13])
    b = policy.generate(msgs, sp, seeds=[11, 12, 13])
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.text for g in a] == [g.text for g in b]
    alone = policy.generate([msgs[1]], sp, seeds=[12])[0]
    assert alone.token_ids == a[1].token_ids
    reordered = policy.generate([msgs[2], msgs[1]], sp, seeds=[13, 12])
    assert reordered[1].token_ids == a[1].token_ids and reordered[0].token_ids == a[2].token_ids
    other = policy.generate([msgs[1]], sp, seeds=[99])[0]
    assert other.token_ids != a[1].token_ids  # 10 tokens from ~900: a collision is ~impossible


def test_decode_writes_the_kv_cache_in_place_and_samples_what_transformers_own_cache_samples(policy, monkeypatch):
    import agents.hf as hf

    prompts = [p for p, _ in zip(*_pairs(policy))] * 2
    seeds = [3, 4, 5, 6, 7, 8]
    sp = SamplingParams(temperature=1.0, max_new_tokens=12)
    cache = hf._reserved_cache(policy.model, 12)
    assert cache is not None and all(type(layer).__name__ == "ReservedLayer" for layer in cache.layers)
    first = policy.generate_ids(prompts, sp, seeds=seeds)
    # two of the sampled tokens become end tokens, so rows leave the batch (and the cache) early
    monkeypatch.setattr(policy, "eos_ids", policy.eos_ids | {first[0].token_ids[2], first[3].token_ids[6]})
    in_place = policy.generate_ids(prompts, sp, seeds=seeds)
    monkeypatch.setattr(hf, "_reserved_cache", lambda model, reserve: None)  # transformers' own cache
    grown = policy.generate_ids(prompts, sp, seeds=seeds)
    assert [g.token_ids for g in in_place] == [g.token_ids for g in grown]
    for a, b in zip(in_place, grown):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert len({len(g.token_ids) for g in in_place}) > 1  # rows ended early: the in-place cache dropped rows


def test_sampled_logprobs_are_untempered_model_logprobs(policy):
    msgs = [[{"role": "user", "content": "go to desk 1"}], [{"role": "user", "content": "look"}]]
    gens = policy.generate(msgs, SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=8), seeds=[1, 2])
    for g in gens:
        assert len(g.logprobs) == len(g.token_ids) == 8 and g.finish_reason == "length"
        assert g.logprobs == pytest.approx(_reference_logprobs(policy, g.prompt_token_ids, g.token_ids), abs=GEN_TOL)


def test_sampler_draws_from_the_distribution_with_each_rows_own_generator():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    logp = probs.log().expand(4000, 4)
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    chosen = HFPolicy._sample(logp, SamplingParams(temperature=1.0), gens)
    freq = torch.bincount(chosen, minlength=4).float() / 4000
    assert freq[1] == 0  # a zero-probability token is never drawn
    assert freq.tolist() == pytest.approx(probs.tolist(), abs=0.03)
    # row i's draw depends on its generator only, not on the other rows
    again = HFPolicy._sample(logp[:3], SamplingParams(temperature=1.0),
                             [torch.Generator().manual_seed(i) for i in (7, 1, 2)])
    assert again[0] == chosen[7] and again[1:].tolist() == chosen[1:3].tolist()


def test_greedy_batched_decode_matches_naive_argmax(policy):
    """Left-padded batch + KV cache + row dropping == a recompute-everything argmax loop."""
    prompts, _ = _pairs(policy)
    gens = policy.generate_ids(prompts, SamplingParams(temperature=0.0, max_new_tokens=6), seeds=[0, 0, 0])
    for p, g in zip(prompts, gens):
        seq = list(p)
        with torch.no_grad():
            for _ in range(6):
                seq.append(int(policy.module(torch.tensor([seq])).logits[0, -1].argmax()))
        assert g.token_ids == seq[len(p):]


def test_top_p_filter_hand_computed():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]])
    expect = torch.tensor([[0.625, 0.375, 0, 0], [0, 0, 0.375, 0.625]])
    assert torch.allclose(top_p_filter(probs, 0.7), expect)
    assert torch.allclose(top_p_filter(probs, 0.5), torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]))
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_tiny_top_p_is_greedy(policy):
    prompts, _ = _pairs(policy)
    greedy = policy.generate_ids(prompts, SamplingParams(temperature=0.0, max_new_tokens=5), seeds=[0, 0, 0])
    nucleus = policy.generate_ids(prompts, SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=5),
                                  seeds=[1, 2, 3])
    assert [g.token_ids for g in greedy] == [g.token_ids for g in nucleus]


def test_stop_string_cuts_text_and_tokens(policy):
    msgs = [[{"role": "user", "content": "go to desk 1"}]]
    sp = SamplingParams(temperature=1.0, max_new_tokens=40)
    full = policy.generate(msgs, sp, seeds=[5])[0]
    # pick a stop string that occurs in the middle of the unconstrained sample
    stop = full.text[len(full.text) // 2:len(full.text) // 2 + 2]
    assert stop and stop in full.text
    cut = policy.generate(msgs, SamplingParams(temperature=1.0, max_new_tokens=40, stop=(stop,)), seeds=[5])[0]
    k = full.text.find(stop)
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:k]
    assert cut.token_ids == full.token_ids[:len(cut.token_ids)]  # a prefix of the same sample
    assert stop in policy.decode(cut.token_ids) and stop not in policy.decode(cut.token_ids[:-1])
    assert len(cut.logprobs) == len(cut.token_ids)


def test_eos_ends_the_response(policy, cache_dir):
    other = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir))
    prompts, _ = _pairs(other)
    sp = SamplingParams(temperature=1.0, max_new_tokens=8)
    first = other.generate_ids(prompts[:1], sp, seeds=[3])[0]
    end = first.token_ids[-1]
    other.eos_ids = frozenset({end})  # this token now ends the sequence where it first appears
    g = other.generate_ids(prompts[:1], sp, seeds=[3])[0]
    assert g.token_ids == first.token_ids[:first.token_ids.index(end) + 1] and g.finish_reason == "stop"
    assert first.finish_reason == "length"
    # the real end-of-turn token is special: it never shows in the text
    eos = policy.tokenizer.eos_token_id
    assert policy.decode(policy.tokenizer("look", add_special_tokens=False)["input_ids"] + [eos]) == "look"


def test_prompt_left_truncation(policy):
    msgs = [{"role": "user", "content": "take apple 2 from countertop 3 and put it in the fridge " * 3}]
    full, cut = policy.encode_chat(msgs)
    assert not cut
    ids, cut = policy.encode_chat(msgs, max_prompt_tokens=10)
    assert cut and ids == full[-10:]
    g = policy.generate([msgs], SamplingParams(max_new_tokens=2, max_prompt_tokens=10), seeds=[0])[0]
    assert g.prompt_truncated and g.prompt_token_ids == full[-10:]


def test_chat_template_is_applied(policy):
    ids, _ = policy.encode_chat([{"role": "user", "content": "look"}])
    text = policy.tokenizer.decode(ids)
    assert text == "<|im_start|>user\nlook<|im_end|>\n<|im_start|>assistant\n"


def test_update_step_raises_logprob_and_reference_stays_frozen(cache_dir):
    pol = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir))
    ref = pol.reference_copy()
    prompts, responses = _pairs(pol)
    before = pol.score(prompts, responses)
    opt = torch.optim.SGD(pol.trainable_parameters(), lr=0.5)
    pol.module.train()
    res = pol.forward_logprobs(prompts, responses)
    (-(res.logprobs * res.mask).sum() / res.mask.sum()).backward()
    opt.step()
    after = pol.score(prompts, responses)
    assert sum(map(sum, after)) > sum(map(sum, before))
    assert not any(p.requires_grad for p in ref.module.parameters())
    for a, b in zip(ref.score(prompts, responses), before):
        assert a == pytest.approx(b, abs=TOL)


def test_save_and_load_round_trip(policy, tmp_path):
    prompts, responses = _pairs(policy)
    policy.save(tmp_path / "ckpt")
    again = HFPolicy.from_pretrained(str(tmp_path / "ckpt"), HFOptions(device="cpu"))
    for a, b in zip(again.score(prompts, responses), policy.score(prompts, responses)):
        assert a == pytest.approx(b, abs=TOL)


def test_lora_trains_only_adapters_and_round_trips(cache_dir, tmp_path):
    pytest.importorskip("peft")
    from agents.hf import LoraSettings

    pol = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir, lora=LoraSettings(r=4)))
    names = [n for n, p in pol.module.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    prompts, responses = _pairs(pol)
    res = pol.forward_logprobs(prompts, responses)
    (-(res.logprobs * res.mask).sum()).backward()
    torch.optim.SGD(pol.trainable_parameters(), lr=1.0).step()
    pol.save(tmp_path / "lora")
    again = HFPolicy.from_pretrained(str(tmp_path / "lora"), HFOptions(device="cpu", cache_dir=cache_dir))
    for a, b in zip(again.score(prompts, responses), pol.score(prompts, responses)):
        assert a == pytest.approx(b, abs=TOL)
    merged = pol.export_state_dict()
    assert not any("lora_" in k for k in merged)
    base = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir))
    gen = again.generate_ids(prompts[:2], SamplingParams(temperature=1.0, max_new_tokens=5), seeds=[1, 2])
    for g in gen:  # sampling runs through the adapters too
        scored = again.score([g.prompt_token_ids], [g.token_ids])[0]
        without = base.score([g.prompt_token_ids], [g.token_ids])[0]
        assert g.logprobs == pytest.approx(scored, abs=LORA_GEN_TOL)
        assert max(abs(a - b) for a, b in zip(without, scored)) > 100 * LORA_GEN_TOL


def test_model_agent_replies_with_tokens_and_seeds(policy):
    agent = ModelAgent(policy, SamplingParams(temperature=1.0, max_new_tokens=6), name="hf:tiny")
    req = lambda seed: AgentRequest(messages=[{"role": "user", "content": "look"}], seed=seed, step=0,  # noqa: E731
                                    observation="", admissible_actions=None, expert_action=None,
                                    action_format="think_action")
    replies = agent.act([req(1), req(2), req(1)])
    assert replies[0].token_ids == replies[2].token_ids != replies[1].token_ids
    for r in replies:
        assert r.text == policy.decode(r.token_ids)
        assert r.prompt_token_ids == policy.encode_chat([{"role": "user", "content": "look"}])[0]
        assert len(r.logprobs) == len(r.token_ids) == 6
    assert agent.act([]) == []


def test_make_agent_options(cache_dir):
    from agents.hf import make_agent

    agent = make_agent("tiny", temperature=0.4, top_p=1.0, max_new_tokens=7, max_prompt_tokens=64,
                       device="cpu", cache_dir=cache_dir)
    assert agent.params == SamplingParams(temperature=0.4, top_p=1.0, max_new_tokens=7, max_prompt_tokens=64)
    with pytest.raises(AgentOptionError, match="temprature"):
        make_agent("tiny", temprature=0.4, cache_dir=cache_dir)


def test_bad_sampling_settings_are_rejected(policy):
    with pytest.raises(ValueError, match="top_p"):
        policy.generate_ids([[1, 2]], SamplingParams(top_p=0.0), seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        policy.generate_ids([[1, 2]], SamplingParams(), seeds=[0, 1])
    with pytest.raises(ValueError, match="prompt"):
        policy.score([[]], [[1]])


def test_bf16_autocast_stays_close_to_fp32(policy, cache_dir):
    prompts, responses = _pairs(policy)
    bf16 = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir, autocast="bfloat16"))
    for a, b in zip(bf16.score(prompts, responses), policy.score(prompts, responses)):
        assert a == pytest.approx(b, abs=0.1)
        assert a != pytest.approx(b, abs=1e-6)  # autocast did change the arithmetic


def test_on_a_cpu_autocast_covers_the_prompt_and_the_decode_steps_run_in_float32(policy, cache_dir):
    import torch

    bf16 = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir, autocast="bfloat16"))
    prompts, _ = _pairs(bf16)
    seen: list[tuple[int, torch.dtype]] = []  # (positions in the call, dtype of the LM head's output)
    head = bf16.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].shape[1], out.dtype)))
    try:
        gens = bf16.generate_ids(prompts, SamplingParams(temperature=1.0, max_new_tokens=6), seeds=[1, 2, 3])
    finally:
        handle.remove()
    assert seen[0][1] == torch.bfloat16  # the prompt's forward: under autocast
    steps = seen[1:]
    assert steps and all(n == 1 and dtype == torch.float32 for n, dtype in steps)  # one token each, float32
    for p, g in zip(prompts, gens):  # the sampled tokens' log-probs are still the model's (bf16 prompt)
        assert g.logprobs == pytest.approx(_reference_logprobs(policy, p, g.token_ids), abs=0.1)


def test_rows_that_finish_early_leave_the_batch_without_disturbing_the_rest(cache_dir):
    other = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir))
    prompts, _ = _pairs(other)
    sp, seeds = SamplingParams(temperature=1.0, max_new_tokens=12), [4, 5, 6]
    free = other.generate_ids(prompts, sp, seeds=seeds)
    other.eos_ids = frozenset({free[0].token_ids[3]})  # row 0 now ends by its 4th token
    batched = other.generate_ids(prompts, sp, seeds=seeds)
    assert len(batched[0].token_ids) <= 4 < max(len(g.token_ids) for g in batched)
    for p, s, g in zip(prompts, seeds, batched):
        assert g.token_ids == other.generate_ids([p], sp, seeds=[s])[0].token_ids
        assert g.logprobs == pytest.approx(_reference_logprobs(other, p, g.token_ids), abs=GEN_TOL)


def test_train_top_layers_trains_only_the_top_blocks_and_the_backward_stops_there(cache_dir):
    from agents.hf import decoder_blocks
    from agents.models import ModelError
    from agents.policy_factory import make_hf_policy
    from opid_gym.config import ConfigError, ModelConfig

    policy = make_hf_policy(ModelConfig(name="tiny", device="cpu", train_top_layers=1))
    blocks = decoder_blocks(policy.model)
    assert len(blocks) == 2
    top = {id(p) for p in blocks[-1].parameters()} | {id(p) for p in policy.model.model.norm.parameters()}
    assert {id(p) for p in policy.trainable_parameters()} == top
    res = policy.forward_logprobs([[5, 6, 7, 8], [9, 10]], [[11, 12], [13]])
    (res.logprobs * res.mask).sum().backward()
    for name, p in policy.model.named_parameters():
        if id(p) in top:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:  # embeddings, the tied head, the lower block: no gradient computed at all
            assert p.grad is None, name
    ref = policy.reference_copy()
    assert not any(p.requires_grad for p in ref.model.parameters())
    with pytest.raises(ModelError, match="2 decoder blocks"):
        HFPolicy.from_pretrained("tiny", HFOptions(device="cpu", cache_dir=cache_dir, train_top_layers=3))
    with pytest.raises(ConfigError, match="train_top_layers"):
        ModelConfig(train_top_layers=0)
