"""The torch family must match exactly: torchaudio's compiled extension only loads with the torch
release it was built against, and pip does not enforce that (torchaudio 2.11.1 declares
``torch>=2.11`` yet fails to load with torch 2.11.0 with an undefined-symbol linker error)."""

from __future__ import annotations

import importlib.metadata

from packaging.version import Version


def fix(torch_release: str = "<your torch version>") -> str:
    return (
        "Fix: install the locked environment (`make venv`, or `pip install --require-hashes -r "
        f"requirements.lock`), or align them by hand: `pip install torchaudio=={torch_release}`."
    )


def check_torch_family(torch_version: str | None = None, torchaudio_version: str | None = None) -> None:
    """Raise ImportError naming both versions and the fix when torch and torchaudio differ.

    Versions are compared on their release numbers, so local build tags (``+cu130``, ``+cpu``) do not
    matter. Reads package metadata only: nothing is imported.
    """
    try:
        torch_version = torch_version or importlib.metadata.version("torch")
        torchaudio_version = torchaudio_version or importlib.metadata.version("torchaudio")
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(
            f"asr_transfer needs torch and torchaudio installed ({err.name} is missing). {fix()}"
        ) from err
    torch_release = Version(torch_version).release
    if torch_release != Version(torchaudio_version).release:
        release = ".".join(map(str, torch_release))
        raise ImportError(
            f"torchaudio {torchaudio_version} does not match torch {torch_version}: torchaudio only loads "
            f"with the torch release it was built for. {fix(release)}"
        )
