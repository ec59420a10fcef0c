"""``check_env``: every registered id passes every check, and each check catches its fault."""

from __future__ import annotations

import gymnasium
import pytest

from opid_gym.checker import CHECKS, check_env
from opid_gym.family import family_of
from opid_gym.registry import accepts, env_ids, full_env_id, register_env
from tests.support.broken import EndsAtTheLimit, RaisesOnEmpty, UnseededReset


SAMPLED = {
    # ScienceWorld's six ids are one class on one engine, differing only in the split file
    # they read (tests/test_sciworld.py checks every split); each costs ~35 s of JVM time
    "sciworld": ("opid/sciworld-l0", "opid/sciworld-l2-train"),
}


def _params() -> list:
    out = []
    for env_id in env_ids():
        # families that read a data set build real games / indexes: tens of seconds each
        family = family_of(env_id)
        marks = [pytest.mark.slow] if family.data_dir is not None else []
        if family.name in SAMPLED and full_env_id(env_id) not in SAMPLED[family.name]:
            continue
        out.append(pytest.param(env_id, marks=marks, id=env_id))
    return out


@pytest.mark.parametrize("env_id", _params())
def test_every_registered_id_passes_every_check(env_id: str, data_root) -> None:
    kwargs: dict = {"data_root": str(data_root)} if accepts(env_id, "data_root") else {}
    if accepts(env_id, "search_backend"):  # WebShop: not Lucene, whose JVM, once started in this
        kwargs["search_backend"] = "bm25s"  # process, refuses the retriever tests' classpath
    results = check_env(env_id, **kwargs)
    made = results[0]
    if not made.ok and made.detail.split(":")[0] in ("DataNotFoundError", "ImportError", "ModuleNotFoundError"):
        pytest.skip(f"{env_id}: {made.detail}")  # a data set or an optional extra absent here
    assert [r.name for r in results] == ["make", *[name for name, _ in CHECKS]]
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]


@pytest.mark.parametrize("cls,failing", [
    (RaisesOnEmpty, ["step accepts any string"]),
    (EndsAtTheLimit, ["step limit is truncation"]),
    (UnseededReset, ["gymnasium env checker", "reset contract"]),  # Gymnasium's reset check sees it too
])
def test_each_check_catches_its_fault_and_only_it(cls: type, failing: list[str]) -> None:
    env_id = f"checker-test-{cls.__name__.lower()}"
    if full_env_id(env_id) not in gymnasium.registry:
        register_env(env_id, f"tests.support.broken:{cls.__name__}", description="broken on purpose")
    results = check_env(env_id)
    bad = [r.name for r in results if not r.ok]
    assert bad == failing, [(r.name, r.detail) for r in results]


def test_a_failing_make_stops_the_checks() -> None:
    results = check_env("toy-guess-nowhere")
    assert [(r.name, r.ok) for r in results] == [("make", False)]
    assert "unknown environment" in results[0].detail
