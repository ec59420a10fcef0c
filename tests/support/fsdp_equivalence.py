"""Three updates of the tiny model on one fixed batch, with either trainer; results to a file.

    python -m tests.support.fsdp_equivalence local OUT.pt            # LocalTrainer, one process
    torchrun --nproc-per-node 2 -m tests.support.fsdp_equivalence fsdp OUT.pt   # ShardedTrainer, gloo

Both build the same tiny model and the same batch (7 step samples of ragged lengths, 2
groups), then for 3 training steps: π_old and π_ref by ``trainer.score``, then
``trainer.update`` with GRPO's loss (KL and entropy terms on, 2 PPO epochs, mini-batches
of 4 rows, micro-batches of 1 row: uneven rows per rank, so the dummy passes run).
Written (by rank 0): the final parameters, every score tensor, every metrics dict,
3 sampled responses, and (fsdp) a checkpoint round trip.
"""

from __future__ import annotations

import sys

import torch

N_ROWS = 7
STEPS = 3


def fixed_batch(vocab: int):
    """7 samples: prompt and response token ids, mask, advantages; the same in every process."""
    from opid_gym.learner import StepBatch

    g = torch.Generator().manual_seed(1234)
    prompts = [torch.randint(3, vocab, (int(n),), generator=g).tolist() for n in (5, 9, 3, 7, 4, 6, 8)]
    responses = [torch.randint(3, vocab, (int(n),), generator=g).tolist() for n in (4, 2, 6, 3, 5, 1, 6)]
    width = max(len(r) for r in responses)
    mask = torch.zeros(N_ROWS, width)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
    z = torch.zeros(N_ROWS)
    batch = StepBatch(
        prompt_ids=prompts, response_ids=responses, mask=mask, rewards=z, returns=z, episode_return=z,
        invalid=torch.zeros(N_ROWS, dtype=torch.bool), won=torch.zeros(N_ROWS, dtype=torch.bool),
        group_index=torch.tensor([0, 0, 0, 1, 1, 1, 1]), traj_index=torch.arange(N_ROWS),
        step_index=torch.zeros(N_ROWS, dtype=torch.long), traj_length=torch.ones(N_ROWS, dtype=torch.long),
        trajectories=[], messages=[[] for _ in range(N_ROWS)], prompt_text=[""] * N_ROWS,
        observation=[""] * N_ROWS, response_text=[""] * N_ROWS, task=[""] * N_ROWS, task_type=[""] * N_ROWS,
        annotations=[{} for _ in range(N_ROWS)],
    )
    adv = torch.tensor([1.0, -0.5, 0.25, -1.0, 0.75, -0.25, 0.5])[:, None] * mask
    return batch, adv


def main(mode: str, out_path: str) -> None:
    from agents.hf import HFOptions, HFPolicy
    from learners.grpo import GRPO
    from opid_gym import distributed
    from opid_gym.backend import SamplingParams
    from opid_gym.config import OptimConfig
    from opid_gym.learner import LearnerConfig

    torch.set_num_threads(1)
    info = distributed.init_distributed("cpu")
    policy = HFPolicy.from_pretrained("tiny", HFOptions(device="cpu"))
    optim = OptimConfig(lr=2e-3, grad_clip=1.0, epochs=2, mini_batch_size=4, micro_batch_size=1)
    learner = GRPO(LearnerConfig(kl_coef=0.05, entropy_coef=0.01), None)  # type: ignore[arg-type]
    if mode == "fsdp":
        from opid_gym.sharded import ShardedTrainer

        trainer = ShardedTrainer(policy, optim, total_steps=STEPS, keep_ref=True, seed=7)
    else:
        from opid_gym.trainer import LocalTrainer

        trainer = LocalTrainer(policy, optim, total_steps=STEPS, keep_ref=True, seed=7)
    batch, adv = fixed_batch(int(policy.model.config.vocab_size))

    # sampling with the trained model: each rank its own share of the prompts (fsdp: unsharded)
    params = SamplingParams(temperature=1.0, max_new_tokens=6)
    prompts, seeds = batch.prompt_ids[:3], [11, 12, 13]
    rows = info.shard(range(3))
    ctx = trainer.unsharded() if mode == "fsdp" else torch.no_grad()
    with ctx:
        gens = policy.generate_ids([prompts[r] for r in rows], params, [seeds[r] for r in rows])
    gathered = distributed.all_gather_objects(list(zip(rows, [g.token_ids for g in gens])))
    samples = dict(pair for part in gathered for pair in part)

    scores, metrics = [], []
    for step in range(STEPS):
        batch.old_logp = trainer.score(batch.prompt_ids, batch.response_ids, width=batch.mask.shape[1])
        batch.ref_logp = trainer.score(batch.prompt_ids, batch.response_ids, which="ref",
                                       width=batch.mask.shape[1])
        scores.append((batch.old_logp.clone(), batch.ref_logp.clone()))
        metrics.append(trainer.update(batch, adv, learner, step=step))
    weights = {k: v.clone() for k, v in trainer.named_weights()}
    result = {"weights": weights, "scores": scores, "metrics": metrics, "samples": samples}

    if mode == "fsdp":  # checkpoint round trip: save, train on, load, train again: the same update
        state = trainer.state_dict()
        batch.old_logp = trainer.score(batch.prompt_ids, batch.response_ids, width=batch.mask.shape[1])
        trainer.update(batch, adv, learner, step=STEPS)
        first = {k: v.clone() for k, v in trainer.named_weights()}
        trainer.load_state_dict(state if info.is_main else None)
        restored = {k: v.clone() for k, v in trainer.named_weights()}
        trainer.update(batch, adv, learner, step=STEPS)
        again = {k: v.clone() for k, v in trainer.named_weights()}
        result["roundtrip"] = {"restored": restored, "first": first, "again": again,
                               "state_keys": sorted(state["model"]) if info.is_main else []}
    if info.is_main:
        torch.save(result, out_path)
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
