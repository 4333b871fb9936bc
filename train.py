"""Train a transfer-learning model: ``python train.py backbone=wav2vec2 head=mlp optimizer.lr=3e-4``."""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # registers the ${asset:...} and ${project_root:} resolvers on import
from asr_transfer.console import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from asr_transfer.pipeline.train import train

    with user_errors():  # a fault in the user's settings or data: one line, the traceback in train.log
        result = train(cfg)
    asr_transfer.config.fast_exit()
    return result


if __name__ == "__main__":
    from asr_transfer.pipeline.cli_keys import check_keys_or_exit
    from asr_transfer.pipeline.plan import ignored_or_exit

    check_keys_or_exit(sys.argv[1:])  # optimiser.lr=... -> optimizer.lr, data.root=... -> data.corpus.root
    ignored_or_exit(sys.argv[1:])  # optimizer.lr=... under the exact probe, which never reads it
    main()
