"""The one list of everything opid-gym ships: environment ids, benchmarks, agents, learners.

Entries point at their implementation lazily (``"module:attr"``): nothing here imports
an environment family, a model backend or a learner, so ``import opid_gym`` stays light
and works without the optional extras.
"""

from __future__ import annotations

from opid_gym.benchmark import Benchmark

# ------------------------------------------------------------------ environments
# (id, entry point, constructor kwargs, description)
ALFWORLD = "environments.alfworld.env:ALFWorldEnv"
WEBSHOP = "environments.webshop.env:WebShopEnv"
SEARCHQA = "environments.searchqa.env:SearchQAEnv"
KEYPAD = "environments.toy.env:KeypadEnv"
SCIWORLD = "environments.sciworld.env:SciWorldEnv"

SEARCHQA_DATASETS = ("nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle")

ENVS: list[tuple[str, str, dict, str]] = [
    ("alfworld-train", ALFWORLD, {"split": "train"}, "ALFWorld training games (3553 upstream)"),
    ("alfworld-valid-train", ALFWORLD, {"split": "valid_train"}, "ALFWorld valid_train games (200 upstream)"),
    ("alfworld-train-all", ALFWORLD, {"split": "train+valid_train"},
     "ALFWorld train and valid_train games together: the training scenes (3553 + 200 upstream)"),
    ("alfworld-seen", ALFWORLD, {"split": "valid_seen"}, "ALFWorld eval_in_distribution (valid_seen, 140 games)"),
    ("alfworld-unseen", ALFWORLD, {"split": "valid_unseen"}, "ALFWorld eval_out_of_distribution (valid_unseen, 134 games)"),
    ("webshop-train", WEBSHOP, {"split": "train"}, "WebShop training goals (1000-product catalogue)"),
    ("webshop-eval", WEBSHOP, {"split": "eval"}, "WebShop evaluation goals (the reference's goals 0-499)"),
    ("webshop-human", WEBSHOP, {"split": "human"}, "WebShop human-written goals of the 1000-product catalogue (13)"),
    ("searchqa-train", SEARCHQA, {"dataset": "train"}, "Search QA training questions (NQ + HotpotQA)"),
    ("searchqa", SEARCHQA, {"dataset": "all"}, "Search QA evaluation, all seven data sets"),
    *[
        (f"searchqa-{d}", SEARCHQA, {"dataset": d}, f"Search QA evaluation, {d}")
        for d in SEARCHQA_DATASETS
    ],
    *[
        entry
        for level in (0, 1, 2)
        for entry in (
            (f"sciworld-l{level}", SCIWORLD, {"level": level, "split": "test"},
             f"ScienceWorld L{level} test task variations (the OPID reference's split)"),
            (f"sciworld-l{level}-train", SCIWORLD, {"level": level, "split": "train"},
             f"ScienceWorld L{level} training task variations (the OPID reference's split)"),
        )
    ],
    ("keypad-train", KEYPAD, {"split": "train"}, "toy keypad game, 96 training tasks (learning benchmark)"),
    ("keypad-eval", KEYPAD, {"split": "eval"}, "toy keypad game, 120 evaluation tasks (learning benchmark)"),
]

# ------------------------------------------------------------------- benchmarks
# version 2 (issue 16): parsing, observations and prompt structure of the OPID reference
# code; WebShop's reference goal split and title score; Search-R1's exact match (no NFC).
# See docs/protocols.md, "Protocol versions".
_ALF = dict(train_env_id="opid/alfworld-train", invalid_penalty=0.1, max_prompt_tokens=2048, version="2")
_SHOP = dict(invalid_penalty=0.1, max_prompt_tokens=4096, version="2")
_SEARCH = dict(
    train_env_id="opid/searchqa-train", max_steps=4, history_length=4,
    invalid_penalty=0.01, max_prompt_tokens=4096, version="2",
)
# ScienceWorld as the reference's run_sciworld*.sh: 30 steps, history 5, c_inv 0.1, 4096-token prompts.
_SCI = dict(max_steps=30, history_length=5, invalid_penalty=0.1, max_prompt_tokens=4096)

BENCHMARKS: list[Benchmark] = [
    Benchmark("alfworld-unseen", "opid/alfworld-unseen", max_steps=30, history_length=5,
              description="ALFWorld unseen split, all 134 games once, 30 steps (OPID protocol)", **_ALF),
    Benchmark("alfworld-seen", "opid/alfworld-seen", max_steps=30, history_length=5,
              description="ALFWorld seen split, all 140 games once, 30 steps (OPID protocol)", **_ALF),
    Benchmark("alfworld-unseen-50", "opid/alfworld-unseen", max_steps=50, history_length=2,
              description="ALFWorld unseen split, 50 steps, history 2 (SDAR/GiGPO protocol)", **_ALF),
    Benchmark("alfworld-seen-50", "opid/alfworld-seen", max_steps=50, history_length=2,
              description="ALFWorld seen split, 50 steps, history 2 (SDAR/GiGPO protocol)", **_ALF),
    Benchmark("alfworld-unseen-short", "opid/alfworld-unseen", max_steps=6, history_length=1,
              max_new_tokens=64, env_kwargs={"max_plan_length": 4}, train_env_kwargs={"max_plan_length": 6},
              description="ALFWorld unseen games whose expert plan has <= 4 actions (34), 6 steps, history 1; "
                          "trains on the games of the training scenes (train + valid_train) whose plan fits "
                          "the 6 steps (the CPU demo's protocol)", **{**_ALF, "train_env_id": "opid/alfworld-train-all"}),
    Benchmark("webshop", "opid/webshop-eval", "opid/webshop-train", max_steps=15, history_length=2,
              description="WebShop 1000-product shop, the reference's 500 test goals, each once, 15 steps", **_SHOP),
    Benchmark("webshop-values", "opid/webshop-eval", "opid/webshop-train", max_steps=15, history_length=2,
              env_kwargs={"option_match": "values"}, **_SHOP,
              train_env_kwargs={"option_match": "values"},
              description="WebShop as `webshop`, options scored value-to-value (every goal winnable; not the released reward)"),
    Benchmark("webshop-human", "opid/webshop-human", "opid/webshop-train", max_steps=15, history_length=2, **_SHOP,
              description="WebShop 1000-product shop, the 13 human-written goals, each once, 15 steps"),
    Benchmark("searchqa", "opid/searchqa", overall="types",
              description="Search QA: NQ, TriviaQA, PopQA, HotpotQA, 2Wiki, MuSiQue, Bamboogle (average over data sets)",
              **_SEARCH),
    Benchmark("searchqa-nfc", "opid/searchqa", overall="types", env_kwargs={"answer_normalization": "nfc"},
              train_env_kwargs={"answer_normalization": "nfc"},
              description="Search QA as `searchqa`, answers compared after Unicode NFC (not Search-R1's exact match)",
              **_SEARCH),
    *[
        Benchmark(f"searchqa-{d}", f"opid/searchqa-{d}", description=f"Search QA: {d}", **_SEARCH)
        for d in SEARCHQA_DATASETS
    ],
    *[
        Benchmark(f"sciworld-l{level}", f"opid/sciworld-l{level}", f"opid/sciworld-l{level}-train",
                  description=f"ScienceWorld L{level} test pairs, each once, 30 steps, engine limit 100 moves, "
                              "easy simplifications (OPID protocol)", **_SCI)
        for level in (0, 1, 2)
    ],
    Benchmark("keypad", "opid/keypad-eval", "opid/keypad-train", max_steps=1, history_length=0,
              max_new_tokens=8, max_prompt_tokens=256, invalid_penalty=0.1,
              description="toy keypad game (environments/toy): 120 tasks, 1 step; a fixed string wins 1/4 "
                          "(learning benchmark, benchmarks/learning.py)"),
]

# Resolves a benchmark's protocol (id, content hash) for result records; see
# benchmarks/protocols.py. Called lazily by evaluate() and the results store.
PROTOCOL_RESOLVER = "benchmarks.protocols:protocol_stamp"

# ------------------------------------------------------------------------ agents
# Scripted agents by name; model agents by prefix ("hf:<model>", ...).
AGENTS: dict[str, tuple[str, str]] = {
    "random": ("agents.scripted:RandomAgent", "uniform over the admissible actions (env check, not a baseline)"),
    "expert": ("agents.scripted:ExpertAgent", "follows the environment's expert plan (env check, not a baseline)"),
}
AGENT_PREFIXES: dict[str, tuple[str, str]] = {
    "hf": ("agents.hf:make_agent", "a transformers model: hf:<name-or-path> (smollm2-135m, tiny, Qwen/...)"),
    "vllm": ("agents.vllm_backend:make_agent", "a vLLM engine (GPU): vllm:<name-or-path>"),
    "openai": ("agents.openai_client:make_agent", "an OpenAI-compatible API: openai:<model> (--base-url, --api-key)"),
    "run": ("agents.run_agent:make_agent", "the trained model of a run folder: run:<run dir> (newest checkpoint)"),
    "saved": ("agents.replay:make_agent", "replays saved trajectories: saved:<trajectories.jsonl or folder>"),
}

# ---------------------------------------------------------------------- learners
LEARNERS: dict[str, str] = {
    "grpo": "learners.grpo:GRPO",
    "opid": "learners.opid:OPID",
    "skill-grpo": "learners.skill_grpo:SkillGRPO",
    "sdar": "learners.sdar:SDAR",
    "opsd": "learners.opsd:OPSD",
    "grpo-opsd": "learners.grpo_opsd:GRPOOPSD",
    "skill-sd": "learners.skill_sd:SkillSD",
    "rlsd": "learners.rlsd:RLSD",
    "gigpo": "learners.gigpo:GiGPO",
    "sft": "learners.sft:SFT",
}
"""Learners by name; each class's ``description`` and ``paper`` are the one description
(``opid-bench list learners`` reads them)."""

CHAT_CLIENT = "agents.openai_client:ChatClient"
"""The OpenAI-compatible chat client behind :func:`opid_gym.chat.make_chat_client`."""

SKILLS_PROMPT_HOOK = "learners.skills.library:skills_prompt_hook"
"""The prompt hook of ``opid-bench eval --skills``:
``make(source: str | None, family: str) -> PromptHook`` (source None: the shipped library)."""

# ---------------------------------------------------------------------- training
POLICY_BACKENDS: dict[str, str] = {
    "hf": "agents.policy_factory:make_hf_policy",
}
"""Trainable model backends by ``model.backend`` (``make(name, cfg: ModelConfig) -> TrainablePolicy``)."""
MODEL_AGENT = "agents.model_agent:ModelAgent"
"""The Generator → Agent adapter the training loop rolls out with."""
ROLLOUT_ENGINES: dict[str, str] = {
    "vllm": "agents.vllm_rollout:make_rollout_engine",
    "vllm-server": "agents.vllm_server:make_rollout_engine",
}
"""Rollout engines other than the trainer itself, by ``model.rollout_engine``
(``make(cfg: ModelConfig, policy) -> Generator & WeightSync``), e.g. vLLM."""
