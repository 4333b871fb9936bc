"""``python -m asr_transfer.fewshot``: the command-line name of ``asr_transfer/pipeline/fewshot.py``."""

from asr_transfer.pipeline.fewshot import main

if __name__ == "__main__":
    main()
