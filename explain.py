"""Why a checkpoint decided what it did: ``python explain.py ckpt_path=... [faithfulness=true] [use_cache=false]``.

Attributions over time for the worst and a few random test clips (``attributions/``) and, with
``faithfulness=true``, the deletion test (``faithfulness.json``); see docs/how-to/interpretability.md.
"""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # registers the ${asset:...} and ${project_root:} resolvers on import
from asr_transfer.console import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    from asr_transfer.pipeline.explain import explain

    with user_errors():
        explain(cfg)
    asr_transfer.config.fast_exit()


if __name__ == "__main__":
    from asr_transfer.pipeline.cli_keys import check_keys_or_exit
    from asr_transfer.pipeline.data_overrides import checkpoint_data_or_exit

    check_keys_or_exit(sys.argv[1:], "explain", skip=("hydra.", "data."))  # data.* keys: checked just below
    checkpoint_data_or_exit(sys.argv[1:])  # data=checkpoint: the data config inside ckpt_path
    main()
