"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best-....ckpt [data=... data.x=...]``."""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # registers the ${asset:...} and ${project_root:} resolvers on import


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from asr_transfer.pipeline.evaluate import evaluate

    metrics = evaluate(cfg)
    asr_transfer.config.fast_exit()
    return metrics.get(cfg.get("optimized_metric") or "", None)


if __name__ == "__main__":
    from asr_transfer.pipeline.data_overrides import checkpoint_data_or_exit

    checkpoint_data_or_exit(sys.argv[1:])  # data=checkpoint: the data config inside ckpt_path
    main()
