"""The baseline: what a user writes with ``transformers`` alone, after ``run_audio_classification.py``.

Kept as the example does it (transformers/examples/pytorch/audio-classification):
  * ``AutoFeatureExtractor`` (``return_attention_mask=True``) run on the fly, per example, every
    time a clip is read (the example's ``set_transform``): Whisper's extractor pads to 30 s;
  * ``AutoConfig`` with the label maps + ``AutoModelForAudioClassification`` (job A: Whisper's
    ``WhisperForAudioClassification``, ``freeze_encoder()``, since Whisper has no
    ``freeze_feature_encoder``); job B: ``Wav2Vec2ForSequenceClassification(Wav2Vec2Config())``,
    a base-size model with random weights, fully fine-tuned;
  * ``Trainer`` + ``TrainingArguments``, its default ``DataCollatorWithPadding``, accuracy from
    ``compute_metrics``, ``trainer.save_model()`` after training.
Differences, all forced by this setting: the clips are read from a folder (soundfile + torchaudio
resampling instead of ``datasets.Audio``), ``report_to=[]``, no evaluation or checkpoints during
training (there is no validation split), and the held-out speaker is scored with
``trainer.evaluate(test_set)``.

    python -m experiments.throughput.hf_trainer_recipe --job A --out /tmp/a.json \
        --recordings ../shared/data/fsdd/recordings --model ../shared/models/whisper-tiny.en
"""

import time

T0 = time.perf_counter()  # first thing: the in-process wall time counts the imports below

import argparse  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from random import randint  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torchaudio.functional as AF  # noqa: E402
from step_clock import StepClock, write_json  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
    set_seed,
)


def random_subsample(wav: np.ndarray, max_length: float, sample_rate: int = 16000) -> np.ndarray:
    """The example's training crop: a random ``max_length``-second window (FSDD clips are shorter)."""
    sample_length = int(round(sample_rate * max_length))
    if len(wav) <= sample_length:
        return wav
    offset = randint(0, len(wav) - sample_length - 1)
    return wav[offset : offset + sample_length]


def list_clips(recordings: Path, speakers: list[str]) -> list[tuple[str, str]]:
    """(path, digit) of every ``{digit}_{speaker}_{index}.wav`` by one of ``speakers``."""
    clips = []
    for f in sorted(recordings.glob("*_*_*.wav")):
        digit, speaker, _ = f.stem.split("_")
        if speaker in speakers:
            clips.append((str(f), digit))
    if not clips:
        sys.exit(f"--recordings {recordings}: no clips by speakers {speakers}")
    return clips


class ClipDataset(Dataset):
    """Decodes, resamples and featurises a clip each time it is read (the example's ``set_transform``)."""

    def __init__(self, clips, label2id: dict, feature_extractor, train: bool, max_length_seconds: float):
        self.clips, self.label2id, self.fe = clips, label2id, feature_extractor
        self.train, self.max_length_seconds = train, max_length_seconds
        self.input_name = feature_extractor.model_input_names[0]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        path, label = self.clips[i]
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        wav = torch.from_numpy(data.mean(axis=1))
        rate = self.fe.sampling_rate
        wav = AF.resample(wav, sr, rate).numpy() if sr != rate else wav.numpy()
        if self.train:
            wav = random_subsample(wav, self.max_length_seconds, rate)
        inputs = self.fe([wav], sampling_rate=rate)
        return {self.input_name: inputs.get(self.input_name)[0], "labels": self.label2id[label]}


class StepTimer(TrainerCallback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.start()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.clock.tick()


def build(job: str, model_path: str | None, labels: list[str], freeze_feature_encoder: bool):
    """(model, feature_extractor) for job A (pretrained Whisper probe) or B (random wav2vec2-base)."""
    label2id = {label: str(i) for i, label in enumerate(labels)}
    id2label = {str(i): label for i, label in enumerate(labels)}
    if job == "A":
        fe = AutoFeatureExtractor.from_pretrained(model_path, return_attention_mask=True)
        config = AutoConfig.from_pretrained(
            model_path,
            num_labels=len(labels),
            label2id=label2id,
            id2label=id2label,
            finetuning_task="audio-classification",
        )
        model = AutoModelForAudioClassification.from_pretrained(model_path, config=config)
        if hasattr(model, "freeze_encoder"):  # Whisper: the probe trains projector + classifier only
            model.freeze_encoder()
        elif freeze_feature_encoder:
            model.freeze_feature_encoder()
    else:
        fe = Wav2Vec2FeatureExtractor(return_attention_mask=True)
        config = Wav2Vec2Config(num_labels=len(labels), label2id=label2id, id2label=id2label)
        model = Wav2Vec2ForSequenceClassification(config)
        if freeze_feature_encoder:
            model.freeze_feature_encoder()
    return model, fe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", choices=["A", "B"], required=True)
    p.add_argument("--recordings", type=Path, required=True, help="folder of FSDD wavs")
    p.add_argument("--model", help="job A: local Whisper folder or hub id")
    p.add_argument("--train-speakers", default="george,jackson,nicolas")
    p.add_argument("--test-speakers", default="yweweler", help="job A only")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--max-steps", type=int, default=-1, help="job B: fixed number of optimizer steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=0.1, help="warmup as a fraction of the steps")
    p.add_argument("--freeze-feature-encoder", action="store_true", help="job B: the example's default")
    p.add_argument("--max-length-seconds", type=float, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="the example's --bf16 (mixed precision)")
    p.add_argument("--work-dir", type=Path, required=True, help="the Trainer's output_dir")
    p.add_argument("--out", type=Path, required=True, help="JSON with timings and test accuracy")
    args = p.parse_args()
    if args.job == "A" and not args.model:
        p.error("--job A needs --model (the Whisper checkpoint)")

    set_seed(args.seed)
    train_clips = list_clips(args.recordings, args.train_speakers.split(","))
    labels = sorted({label for _, label in train_clips})
    model, fe = build(args.job, args.model, labels, args.freeze_feature_encoder)
    label2id = {label: i for i, label in enumerate(labels)}
    train_set = ClipDataset(train_clips, label2id, fe, True, args.max_length_seconds)

    def compute_metrics(eval_pred):
        predictions = np.argmax(eval_pred.predictions, axis=1)
        return {"accuracy": float((predictions == eval_pred.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=str(args.work_dir),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        bf16=args.bf16,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        logging_steps=10,
        seed=args.seed,
    )
    clock = StepClock()
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        compute_metrics=compute_metrics,
        processing_class=fe,
        callbacks=[StepTimer(clock)],
    )
    t = time.perf_counter()
    result = trainer.train()
    trainer.save_model()
    out = {
        "job": args.job,
        "train_s": time.perf_counter() - t,
        "n_train": len(train_set),
        "global_steps": result.global_step,
        "train_loss": result.training_loss,
        "steps_per_epoch": math.ceil(len(train_set) / args.batch_size),
        **clock.summary(),
    }
    if args.job == "A":
        test_clips = list_clips(args.recordings, args.test_speakers.split(","))
        test_set = ClipDataset(test_clips, label2id, fe, False, args.max_length_seconds)
        t = time.perf_counter()
        metrics = trainer.evaluate(eval_dataset=test_set, metric_key_prefix="test")
        out.update(test_s=time.perf_counter() - t, n_test=len(test_set), test_acc=metrics["test_accuracy"])
    out["inproc_wall_s"] = time.perf_counter() - T0
    out["self_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if torch.cuda.is_available():  # on a GPU the memory that limits batch size is the card's
        out["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    write_json(args.out, out)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()})


if __name__ == "__main__":
    main()
