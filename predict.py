"""Label or transcribe audio: ``python predict.py ckpt_path=... inputs=[a.wav,b.wav] output=preds.csv``
(``inputs`` may name folders; ``.json`` output writes JSON)."""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # registers the ${asset:...} and ${project_root:} resolvers on import
from asr_transfer.console import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from asr_transfer.pipeline.predict import run

    with user_errors():  # a fault in the user's settings or data: one line, the traceback in predict.log
        run(cfg)
    asr_transfer.config.fast_exit()


if __name__ == "__main__":
    from asr_transfer.pipeline.cli_keys import check_keys_or_exit
    from asr_transfer.pipeline.data_overrides import checkpoint_data_or_exit

    check_keys_or_exit(sys.argv[1:], "predict", skip=("hydra.", "data."))  # data.* keys: checked just below
    checkpoint_data_or_exit(sys.argv[1:])  # data=checkpoint: the data config inside ckpt_path
    main()
