"""asr_transfer: transfer learning of pretrained speech encoders."""

from asr_transfer.utils.versions import check_torch_family

# Before anything imports torchaudio: a mismatch would otherwise surface as a linker error.
check_torch_family()
