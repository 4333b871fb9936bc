"""Render a run (or sweep) directory as one offline HTML file: ``python report.py run_dir=<dir>``."""

import hydra
from omegaconf import DictConfig

import asr_transfer.config  # noqa: F401  (registers resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> str:
    from asr_transfer.report.render import write_report

    path = write_report(cfg.run_dir, cfg.output, cfg.worst, cfg.max_audio_s)
    print(path)
    return str(path)


if __name__ == "__main__":
    main()
