"""``python -m asr_transfer.drift ckpt_path=...``: the command-line name of ``asr_transfer/pipeline/drift.py``."""

from asr_transfer.pipeline.drift import main

if __name__ == "__main__":
    main()
