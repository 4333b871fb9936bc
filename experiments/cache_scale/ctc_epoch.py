"""One ``ctc_blstm`` epoch over stored frames vs the head's bare forward+backward over the same batches.

    python -m experiments.cache_scale.ctc_epoch [--train-per-speaker 40 --eval-per-speaker 20]

``experiment=fsdd_digits_ctc`` (frozen Whisper tiny.en, ``featurizer=last``, ``head=ctc_blstm``).
Lightning: ``Trainer.fit`` for one epoch, no validation, no checkpoints or loggers, timed from
``on_train_epoch_start`` to ``on_train_epoch_end`` (reading the shards included). Bare: the same
initial weights, the same padded batches (epoch 0 of the same sampler, read into memory first),
featurizer + head + CTC loss, ``backward``, AdamW step, in a plain loop; same process, same
threads. Bare runs before and after Lightning; the faster is kept. Appends to results-ctc_blstm_epoch.csv.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import lightning as L
import torch

from asr_transfer.config import compose
from asr_transfer.pipeline.build import build_run, build_task, task_class
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.tasks.ctc import ctc_loss_fp32
from experiments.cache_scale.run import record

WORK = Path(os.environ.get("CACHE_SCALE_WORK", "/tmp/cache_scale"))


class EpochTimer(L.Callback):
    def on_train_epoch_start(self, trainer, module) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds = time.perf_counter() - self.t0


def bare_epoch(task, batches: list[dict], lr: float) -> float:
    task.train()
    opt = torch.optim.AdamW(task.param_groups(), lr=lr)
    t0 = time.perf_counter()
    for batch in batches:
        logits, flens = task(batch)
        targets, target_lengths = task.targets(batch)
        loss, _ = ctc_loss_fp32(logits, flens, targets, target_lengths, task.tokenizer.blank)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-per-speaker", type=int, default=40)
    ap.add_argument("--eval-per-speaker", type=int, default=20)
    a = ap.parse_args()
    cfg = compose(
        [
            "experiment=fsdd_digits_ctc",
            f"data.corpus.train_per_speaker={a.train_per_speaker}",
            f"data.corpus.eval_per_speaker={a.eval_per_speaker}",
            f"features.dir={WORK}/features-ctc",
            f"paths.cache_dir={WORK}/cache",
            f"paths.output_dir={WORK / 'run-ctc'}",
            "trainer.accelerator=cpu",
        ]
    )
    L.seed_everything(0, verbose=False)
    parts, task = build_run(cfg, make_plan(cfg, overrides=[]))
    dm = parts.datamodule
    start = copy.deepcopy(task.state_dict())
    batches = list(dm.loader("train"))  # epoch 0 of the training sampler: what fit's first epoch sees
    lr = float(cfg.optimizer.lr)

    def fresh():
        featurizer = copy.deepcopy(parts.featurizer)  # each task its own: training changes it
        t = build_task(cfg, parts.backbone, featurizer, None, **task_class(cfg).data_kwargs(dm))
        t.load_state_dict(start)
        return t

    bare = [bare_epoch(fresh(), batches, lr)]
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    trainer.fit(task, datamodule=dm)
    bare.append(bare_epoch(fresh(), batches, lr))
    record(
        {
            "experiment": "ctc_blstm_epoch",
            "clips": len(dm.datasets["train"]),
            "batches": len(batches),
            "threads": torch.get_num_threads(),
            "lightning_epoch_s": round(timer.seconds, 2),
            "bare_epoch_s": round(min(bare), 2),
            "bare_runs_s": " ".join(f"{b:.2f}" for b in bare),
            "ratio": round(timer.seconds / min(bare), 3),
        }
    )


if __name__ == "__main__":
    main()
