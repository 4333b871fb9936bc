"""FSDD probe on every unseen speaker, and the no-transfer baseline beside it (issue 3's report).

Each of the four speakers is the test speaker once (the next one validates, the other two train);
the same split is also trained with ``backbone=scratch``. Runs in one process so imports and the
model load happen once; features are cached, so only the first run pays for the backbone.

    python -m experiments.fsdd_speakers.run        # writes results.csv next to this file
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from asr_transfer.config import compose
from asr_transfer.pipeline.train import train
from asr_transfer.utils.atomic import write_csv

HERE = Path(__file__).resolve().parent

SPEAKERS = ["george", "jackson", "nicolas", "yweweler"]


def run(overrides: list[str], out: Path) -> dict:
    cfg = compose([f"paths.output_dir={out}", *overrides])
    t = time.perf_counter()
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["seconds"] = time.perf_counter() - t
    return metrics


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fsdd_speakers_"))
    common = [
        "experiment=fsdd_probe",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        f"paths.cache_dir={work / 'cache'}",
    ]
    rows = []
    plans = [
        ("whisper-tiny.en frozen probe", test, SPEAKERS[(i + 1) % 4], []) for i, test in enumerate(SPEAKERS)
    ]
    plans.append(("scratch (no transfer)", "yweweler", "nicolas", ["backbone=scratch"]))
    for name, test, val, extra in plans:
        out = work / f"{name.split()[0]}-{test}"
        m = run(
            [*common, f"data.corpus.test_speakers=[{test}]", f"data.corpus.val_speakers=[{val}]", *extra], out
        )
        rows.append(
            {
                "model": name,
                "test_speaker": test,
                "val_speaker": val,
                "test_acc": round(m["test/acc"], 4),
                "test_f1": round(m["test/f1"], 4),
                "val_acc": round(m["val/acc"], 4),
                "seconds": round(m["seconds"], 1),
            }
        )
        print(rows[-1], flush=True)
        write_csv(HERE / "results.csv", rows)


if __name__ == "__main__":
    main()
