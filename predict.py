"""Label or transcribe audio: ``python predict.py ckpt_path=... inputs=[a.wav,b.wav] output=preds.csv``
(``inputs`` may name folders; ``.json`` output writes JSON)."""

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # noqa: F401  (registers resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from asr_transfer.pipeline.predict import run
    from asr_transfer.pipeline.process import prepare_exit

    run(cfg)
    prepare_exit()


if __name__ == "__main__":
    main()
