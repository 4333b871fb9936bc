"""OmegaConf resolvers used by conf/, and the ``data=checkpoint`` option (registered on import, before Hydra
composes)."""

from __future__ import annotations

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


register()
