"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best-....ckpt [data=... data.x=...]``."""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # registers the ${asset:...} and ${project_root:} resolvers on import
from asr_transfer.console import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from asr_transfer.pipeline.evaluate import evaluate

    with user_errors():  # a fault in the user's settings or data: one line, the traceback in eval.log
        metrics = evaluate(cfg)
    asr_transfer.config.fast_exit()
    return metrics.get(cfg.get("optimized_metric") or "", None)


if __name__ == "__main__":
    from asr_transfer.pipeline.cli_keys import check_keys_or_exit
    from asr_transfer.pipeline.data_overrides import checkpoint_data_or_exit

    check_keys_or_exit(sys.argv[1:], "eval", skip=("hydra.", "data."))  # data.* keys: checked just below
    checkpoint_data_or_exit(sys.argv[1:])  # data=checkpoint: the data config inside ckpt_path
    main()
