"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best-....ckpt [data=... data.x=...]``.

Without ``ckpt_path`` a pretrained model is scored as it is (zero-shot, ``task=seq2seq``), composed
from train.yaml like a training run: ``python eval.py experiment=fsdd_digits_whisper``.
"""

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


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def zero_shot(cfg: DictConfig) -> float | None:
    from asr_transfer.pipeline.evaluate import zero_shot

    metrics = zero_shot(cfg)
    asr_transfer.config.fast_exit()
    return metrics.get(cfg.get("optimized_metric") or "", None)


if __name__ == "__main__":
    from asr_transfer.pipeline.data_overrides import checkpoint_data_or_exit

    if not any(a.lstrip("+").split("=", 1)[0] == "ckpt_path" for a in sys.argv[1:]):
        zero_shot()
    else:
        checkpoint_data_or_exit(sys.argv[1:])  # data=checkpoint: the data config inside ckpt_path
        main()
