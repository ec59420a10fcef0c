"""``opid-bench data download``: fetch the full data sets with the upstream tools.

Each data set is downloaded by its own project's tool into the data root, in the
layout opid-gym reads; how is the family's business (:class:`~opid_gym.family.EnvFamily`
``download_help`` and ``download``). Machines without internet get a clear message
instead of a hang (every network step has a timeout).
"""

from __future__ import annotations

from pathlib import Path

from opid_gym.family import EnvFamily, data_families


def data_set_family(dataset: str) -> EnvFamily:
    """The family that keeps data set ``dataset`` (its data folder or its family name).

    Raises:
        KeyError: no registered family keeps such a data set; the message lists them.
    """
    families = data_families()
    if dataset in families:
        return families[dataset]
    by_name = {f.name: f for f in families.values()}
    if dataset in by_name:
        return by_name[dataset]
    from opid_gym.registry import UnknownNameError, suggest

    raise UnknownNameError(f"unknown data set {dataset!r}." + suggest(dataset, sorted(families)))


def download(dataset: str, root: Path) -> int:
    """Print how to get ``dataset`` and run its upstream download tool where it has one."""
    family = data_set_family(dataset)
    print(family.download_help)
    if family.download is None:
        print("This data set has no single upstream download command; follow the steps above.")
        return 1
    return family.download(root)
