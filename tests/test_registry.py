"""Registry: Gymnasium ids, "did you mean", duplicates, and third-party plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest

import opid_gym
from opid_gym import builtin, registry
from opid_gym.registry import Registry, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]


def test_every_builtin_id_is_in_gymnasiums_registry() -> None:
    ids = registry.env_ids()
    for env_id, entry, _, _ in builtin.ENVS:
        assert f"opid/{env_id}" in ids
        assert gymnasium.spec(f"opid/{env_id}").entry_point == entry


def test_unknown_env_id_suggests_the_close_one() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: `opid/alfworld-unseen`"):
        opid_gym.make("alfworld-unsen")


def test_gymnasium_make_suggests_too() -> None:
    with pytest.raises(gymnasium.error.NameNotFound, match="alfworld-unseen"):
        gymnasium.make("opid/alfworld-unsen")


def test_registry_refuses_duplicates_and_suggests() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    with pytest.raises(UnknownNameError, match="`alpha`"):
        reg.get("alpah")
    reg.register("lazy", "math:pi")
    assert abs(reg.get("lazy") - 3.14159) < 1e-4


def test_duplicate_env_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        opid_gym.register_env("alfworld-unseen", builtin.ALFWORLD)


def test_unknown_benchmark_and_agent() -> None:
    with pytest.raises(UnknownNameError, match="alfworld-seen"):
        opid_gym.BENCHMARKS.get("alfworld-sen")
    from opid_gym.agent import make_agent

    with pytest.raises(KeyError, match="expert"):
        make_agent("exprt")


@pytest.mark.slow
def test_third_party_package_registers_through_entry_point(tmp_path: Path) -> None:
    """The example of docs/adding-an-environment.md, pip-installed, registers and runs."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT / "docs" / "examples" / "opid-guess")],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    script = (
        "import json, opid_gym\n"
        "from opid_gym.checker import check_env\n"
        "ids = opid_gym.env_ids()\n"
        "checks = check_env('guess/number-v0')\n"
        "print(json.dumps({'ids': ids, 'checks': [c.ok for c in checks]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "guess/number-v0" in result["ids"]
    assert all(result["checks"]) and len(result["checks"]) >= 4
    # The CLI evaluates it with the expert, in worker processes (the spec travels to them).
    cli = subprocess.run(
        [sys.executable, "-m", "opid_gym", "eval", "--agent", "expert", "--env", "guess", "--workers", "2",
         "--json", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr
    summary = json.loads(cli.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 8 and summary["success_rate"] == 1.0 and summary["errors"] == 0
