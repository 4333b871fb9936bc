"""Render a run (or sweep) directory as one offline HTML file: ``python report.py run_dir=<dir>``."""

import sys

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # noqa: F401  (registers resolvers)
from asr_transfer.console import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> str:
    from asr_transfer.report.render import write_report

    with user_errors():  # a run_dir that holds no run: one line
        path = write_report(cfg.run_dir, cfg.output, cfg.worst, cfg.max_audio_s)
    print(path)
    return str(path)


if __name__ == "__main__":
    from asr_transfer.report.rundir import run_dir_or_exit

    run_dir_or_exit(sys.argv[1:])  # before Hydra, which would create a mistyped run_dir for its log
    main()
