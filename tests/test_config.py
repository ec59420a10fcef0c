"""Run configuration: defaults per (benchmark, learner), presets, typed overrides, clear errors."""

from __future__ import annotations

import json

import pytest

from opid_gym.config import (
    PRESETS,
    ConfigError,
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    parse_set_items,
    resolve_config,
)


def test_alfworld_grpo_defaults_come_from_the_spec_and_the_benchmark():
    cfg = resolve_config("grpo", "alfworld-unseen")
    assert (cfg.rollout.tasks_per_step, cfg.rollout.group_size, cfg.steps) == (16, 8, 150)
    assert (cfg.env.max_steps, cfg.env.history_length, cfg.rollout.max_prompt_tokens) == (30, 5, 2048)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.grad_clip, cfg.optim.epochs) == (1e-6, 0.01, 1.0, 1)
    assert (cfg.learner.adv_norm, cfg.learner.kl_coef, cfg.learner.entropy_coef) == ("mean_std_norm", 0.01, 0.001)
    assert cfg.learner.invalid_penalty == 0.1
    assert cfg.rollout.temperature == 1.0
    # the SDAR/GiGPO protocol variant of the same environment
    cfg50 = resolve_config("grpo", "alfworld-unseen-50")
    assert (cfg50.env.max_steps, cfg50.env.history_length) == (50, 2)


def test_presets_apply_and_set_wins_over_preset():
    smoke = resolve_config("grpo", "alfworld-unseen", preset="smoke")
    assert smoke.model.name == "tiny" and smoke.steps == 2
    cfg = resolve_config("grpo", "alfworld-unseen", preset="smoke", set_items=["steps=5", "optim.lr=2e-5"])
    assert cfg.steps == 5 and cfg.optim.lr == 2e-5
    assert resolve_config("grpo", "alfworld-unseen", preset="cpu-demo").model.name == "smollm2-135m"
    assert resolve_config("grpo", "alfworld-unseen", preset="paper").model.name.startswith("Qwen/")
    assert set(PRESETS) == {"smoke", "cpu-demo", "paper"}


def test_set_values_are_typed():
    cfg = resolve_config("grpo", "alfworld-unseen", set_items=[
        "seed=7", "learner.dual_clip=null", "log.tensorboard=false", "eval.limit=3",
        "learner.pooling=trajectory", "model.name=tiny", "rollout.temperature=1",
    ])
    assert cfg.seed == 7 and cfg.learner.dual_clip is None and cfg.log.tensorboard is False
    assert cfg.eval.limit == 3 and cfg.learner.pooling == "trajectory" and cfg.model.name == "tiny"
    assert isinstance(cfg.rollout.temperature, float)


@pytest.mark.parametrize("items, message", [
    (["optim.lrr=1e-5"], "did you mean: `optim.lr`"),
    (["optim.lr=fast"], "optim.lr expects float"),
    (["steps=1.5"], "steps expects int"),
    (["learner.adv_norm=zscore"], "learner.adv_norm must be one of"),
    (["rollout.group_size=0"], "rollout.group_size must be >= 1"),
    (["optim.lr=-1"], "optim.lr must be > 0"),
    (["steps"], "--set expects KEY=VALUE"),
    (["=3"], "--set expects KEY=VALUE"),
    (["log.tensorboard=maybe"], "log.tensorboard expects bool"),
    (["learner_name=opid"], "--learner"),
    (["env.benchmark=webshop"], "--env"),
    (["seed=null"], "seed expects int"),
])
def test_bad_overrides_fail_with_a_clear_message(items, message):
    with pytest.raises(ConfigError) as info:
        resolve_config("grpo", "alfworld-unseen", set_items=items)
    assert message.lower() in str(info.value).lower()


def test_unknown_preset_learner_and_benchmark():
    with pytest.raises(ConfigError, match="(?i)did you mean"):
        resolve_config("grpo", "alfworld-unseen", preset="smok")
    from opid_gym.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="(?i)did you mean"):
        resolve_config("grpoo", "alfworld-unseen")
    with pytest.raises(UnknownNameError, match="(?i)did you mean"):
        resolve_config("grpo", "alfworld-unsen")


def test_config_round_trips_through_json_exactly():
    cfg = resolve_config("grpo", "alfworld-unseen", preset="smoke", set_items=["learner.dual_clip=null", "seed=3"])
    again = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg


def test_a_config_file_with_unknown_or_mistyped_keys_is_refused():
    good = config_to_dict(RunConfig())
    bad = json.loads(json.dumps(good))
    bad["optim"]["learning_rate"] = 1.0
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        config_from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["rollout"]["group_size"] = "8"
    with pytest.raises(ConfigError, match="rollout.group_size expects int"):
        config_from_dict(bad)
    with pytest.raises(ConfigError, match="JSON object"):
        config_from_dict([1, 2])


def test_overrides_leave_the_original_untouched():
    cfg = RunConfig()
    new = apply_overrides(cfg, {"optim.lr": 0.5})
    assert cfg.optim.lr == 1e-6 and new.optim.lr == 0.5
    assert parse_set_items(["a.b=c=d"]) == {"a.b": "c=d"}


def test_tuple_fields_of_learner_configs_parse_from_text_and_json():
    import typing

    from opid_gym.config import coerce

    tp = typing.Tuple[float, ...]
    assert coerce("0.1, 0.2", tp, "k", from_text=True) == (0.1, 0.2)
    assert coerce("[1, 2]", tp, "k", from_text=True) == (1.0, 2.0)
    assert coerce([3], tp, "k", from_text=False) == (3.0,)
    with pytest.raises(ConfigError, match=r"k\[1\] expects float"):
        coerce("1, x", tp, "k", from_text=True)
