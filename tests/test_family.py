"""Environment families: declared by the env class, read by the core through the registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium
import pytest

import opid_gym
from opid_gym.cli import main
from opid_gym.config import RunConfig, apply_overrides
from opid_gym.data import DatasetStatus
from opid_gym.download import data_set_family, download
from opid_gym.family import EnvFamily, data_families, dataset_status, family_of, registered_families
from opid_gym.learner import LearnerConfig
from opid_gym.registry import UnknownNameError, env_class, env_ids, full_env_id, register_env
from tests.toyenv import GuessEnv


def _status(root: Path) -> list[DatasetStatus]:
    return [DatasetStatus("extra", root / "extra", (root / "extra").is_dir(), "family-test rows")]


def _download(root: Path) -> int:
    (root / "extra").mkdir(parents=True, exist_ok=True)
    return 0


class ExtraEnv(GuessEnv):
    """A third-party family: only its own class says where its data lives."""

    family = EnvFamily("extra", metric_keys=("score",), data_dir="extra", data_status=_status,
                       download_help="extra: made by the test", download=_download)


def _register_extra() -> None:
    if full_env_id("family-test-extra") not in gymnasium.registry:
        register_env("family-test-extra", "tests.test_family:ExtraEnv", description="family test env")


def test_every_registered_env_declares_a_typed_family() -> None:
    for env_id in env_ids():
        family = family_of(env_id)
        assert isinstance(family, EnvFamily) and family.name
        assert family is env_class(env_id).family


def test_family_defaults_are_valid_config_keys_and_learner_fields() -> None:
    learner_fields = {f.name for f in dataclasses.fields(LearnerConfig)}
    for family in registered_families():
        apply_overrides(RunConfig(), dict(family.run_defaults))  # an unknown key would raise ConfigError
        assert set(family.loss_defaults) <= learner_fields, family.name


def test_data_status_counts_what_the_alfworld_loader_would_read(tmp_path: Path) -> None:
    game = tmp_path / "alfworld" / "json_2.1.1" / "valid_seen" / "pick_and_place_simple-x" / "trial_1"
    game.mkdir(parents=True)
    (game / "game.tw-pddl").write_text("{}")
    (tmp_path / "search_qa").mkdir()
    (tmp_path / "search_qa" / "nq.jsonl").write_text("")
    rows = {s.name: s for s in dataset_status(tmp_path)}
    assert rows["alfworld/valid_seen"].present and rows["alfworld/valid_seen"].detail == "1 games"
    assert not rows["alfworld/train"].present and rows["alfworld/train"].detail == "0 games"
    assert rows["search_qa"].present and not rows["webshop"].present


def test_data_sets_are_named_by_folder_or_family() -> None:
    assert data_set_family("search_qa") is data_set_family("searchqa") is family_of("searchqa")
    with pytest.raises(UnknownNameError, match="search_qa"):
        data_set_family("serch_qa")


def test_a_new_family_reaches_data_status_and_download_without_core_edits(tmp_path: Path, capsys) -> None:
    _register_extra()
    assert "extra" in data_families()
    assert [s.name for s in dataset_status(tmp_path) if s.name == "extra"] == ["extra"]
    assert download("extra", tmp_path) == 0 and (tmp_path / "extra").is_dir()
    assert "made by the test" in capsys.readouterr().out
    assert next(s for s in dataset_status(tmp_path) if s.name == "extra").present
    assert family_of("family-test-extra").metric_keys == ("score",)


def test_data_download_of_an_unknown_set_is_one_clear_line(capsys) -> None:
    assert main(["data", "download", "serch_qa"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("opid-bench: error: unknown data set 'serch_qa'") and "search_qa" in err


def test_data_download_without_an_upstream_tool_prints_the_steps(tmp_path: Path, capsys) -> None:
    assert main(["--data-root", str(tmp_path), "data", "download", "webshop"]) == 1
    out = capsys.readouterr().out
    assert family_of("webshop-eval").download_help in out and "no single upstream download command" in out


def test_a_name_only_family_still_resolves() -> None:
    from opid_gym.family import family_of_class

    class Legacy(opid_gym.TextEnv):
        family = "legacy"  # type: ignore[assignment]

    assert family_of_class(Legacy) == EnvFamily("legacy")
