"""Why a transferred model decided what it did: attributions over time (Captum), their faithfulness
(deletion test), embedding maps with silhouettes, and where fine-tuning changed the encoder (CKA, weight
change). Pure computations on modules and tensors; the entry points (``explain.py``,
``python -m asr_transfer.drift``) load checkpoints and write files."""
