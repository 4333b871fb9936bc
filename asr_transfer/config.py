"""What every entry point shares: the OmegaConf resolvers conf/ uses and the ``data=checkpoint`` option
(registered on import, before Hydra composes), and a fast interpreter exit."""

from __future__ import annotations

import gc
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _asset(local: str, fallback: str | None = None) -> str | None:
    """``${asset:LOCAL,FALLBACK}``: LOCAL when that path exists (offline copies in ../shared), else FALLBACK
    (a hub id to download, or null to download the corpus)."""
    return str(Path(local).resolve()) if Path(local).exists() else fallback


def register() -> None:
    if not OmegaConf.has_resolver("asset"):
        OmegaConf.register_new_resolver("asset", _asset)
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    # conf/eval.yaml and conf/predict.yaml default to data=checkpoint. Empty here: the checkpoint's own data
    # config as it is. eval.py / predict.py store the checkpoint's data config under this name before
    # composing (asr_transfer/pipeline/data_overrides.py), so data.* overrides can edit it.
    ConfigStore.instance().store(group="data", name="checkpoint", node={})


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train"):
    """``conf/<config_name>.yaml`` with ``overrides``, composed as the command line would (for drivers,
    studies and tests that build a run without ``@hydra.main``). ``${hydra:...}`` is not available:
    give ``paths.output_dir=...`` among the overrides when the run writes anything."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def fast_exit() -> None:
    """Call last in a single (non-multirun) job: nothing the job made is needed any more.

    With torch, transformers and Lightning loaded, CPython's shutdown spends seconds walking every
    live object in its final cyclic collections. ``gc.freeze()`` moves them to the permanent
    generation, which those collections skip; files are already closed and atexit handlers (W&B's
    upload) still run. Never in a multirun: a sweep's next trial needs the collector to free this
    one's cycles.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():  # called outside @hydra.main (tests, notebooks)
        return
    if HydraConfig.get().mode == RunMode.RUN:
        gc.freeze()


register()
