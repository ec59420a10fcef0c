"""Build the trainable policy of a run from its ``model`` config section.

The training loop reaches this through :data:`opid_gym.builtin.POLICY_BACKENDS`
(``model.backend = "hf"``), so the core never imports a backend directly.
"""

from __future__ import annotations

from typing import Any

from agents.hf import HFOptions, HFPolicy


def make_hf_policy(model: Any) -> HFPolicy:
    """An :class:`~agents.hf.HFPolicy` for a :class:`~opid_gym.config.ModelConfig`."""
    options = HFOptions(device=model.device, dtype=model.dtype, autocast=model.autocast,
                        gradient_checkpointing=model.gradient_checkpointing,
                        train_top_layers=model.train_top_layers)
    return HFPolicy.from_pretrained(model.name, options)
