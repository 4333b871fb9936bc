"""``python -m asr_transfer.layerwise``: the command-line name of ``asr_transfer/pipeline/layerwise.py``."""

from asr_transfer.pipeline.layerwise import main

if __name__ == "__main__":
    main()
