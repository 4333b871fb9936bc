"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best-....ckpt [data=... data.x=...]``.

Without ``ckpt_path`` a pretrained model is scored as it is (zero-shot, ``task=seq2seq``), composed
from train.yaml like a training run: ``python eval.py experiment=fsdd_digits_whisper``.
"""

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


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def zero_shot(cfg: DictConfig) -> float | None:
    from asr_transfer.pipeline.evaluate import zero_shot

    with user_errors():  # e.g. a task whose head must be trained first: one line, the fix named
        metrics = zero_shot(cfg)
    asr_transfer.config.fast_exit()
    return metrics.get(cfg.get("optimized_metric") or "", None)


if __name__ == "__main__":
    from asr_transfer.pipeline.cli_keys import check_keys_or_exit
    from asr_transfer.pipeline.data_overrides import checkpoint_data_or_exit

    if not any(a.lstrip("+").split("=", 1)[0] == "ckpt_path" for a in sys.argv[1:]):
        check_keys_or_exit(sys.argv[1:])  # composed from train.yaml: the keys of a training run
        if not any(a.startswith("hydra=") for a in sys.argv[1:]):
            sys.argv.append("hydra=eval")  # eval's own folder and log, as with a checkpoint
        zero_shot()
    else:
        check_keys_or_exit(
            sys.argv[1:], "eval", skip=("hydra.", "hydra/", "data.")
        )  # data.* keys: checked just below
        checkpoint_data_or_exit(sys.argv[1:])  # data=checkpoint: the data config inside ckpt_path
        main()
