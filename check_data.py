"""Check a data config before training: ``python check_data.py data=manifest data.train_manifest=...``.

Takes the same overrides as ``train.py``; reports every bad file and manifest line at once and
exits with status 1 when a ``train.py`` run with this config would stop.
"""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # noqa: F401  (registers the ${asset:...} and ${project_root:} resolvers)
from asr_transfer.console import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from asr_transfer.pipeline.check_data import check_data

    with user_errors():  # a setting that cannot work (no root, no manifest): one line
        status = check_data(cfg)
    if status:  # hydra.main drops return values: exit here so scripts and CI see the failure
        sys.exit(status)


if __name__ == "__main__":
    from asr_transfer.pipeline.cli_keys import check_keys_or_exit

    check_keys_or_exit(sys.argv[1:])  # optimiser.lr=... -> optimizer.lr, data.root=... -> data.corpus.root
    main()
