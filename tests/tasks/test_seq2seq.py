"""task=seq2seq against transformers' own Whisper: labels, loss, greedy decoding, generation config,
the multilingual prefix, what trains (freeze, adapters per stack) and what checkpoints keep.

The reference is the transformers fine-tuning recipe: ``WhisperProcessor`` (30 s log-mel input,
``tokenizer(text).input_ids`` labels) and ``WhisperForConditionalGeneration(labels=...)`` / ``generate``.
Our side runs the encoder as the backbone (``pad_to_30s=true`` for the comparison) and the decoder head.
"""

from __future__ import annotations

import json
import shutil
from functools import partial

import pytest
import soundfile as sf
import torch

from asr_transfer.backbones.adapters import Bottleneck, LoRA
from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from asr_transfer.featurizers import LastLayer
from asr_transfer.heads.whisper_decoder import WhisperDecoderHead
from asr_transfer.tasks.seq2seq import Seq2SeqTask
from asr_transfer.text.whisper import hallucinated
from tests.conftest import FSDD_DIR, SHARED, WHISPER_DIR, needs_shared
from tests.presets import TINY_WHISPER_CONFIG

CLIPS = ["3_george_0.wav", "7_jackson_1.wav", "0_nicolas_2.wav"]
TEXTS = ["three", "seven", "zero"]
TOL = 1e-5


def clips(n: int = 3) -> dict:
    wav = [torch.tensor(sf.read(FSDD_DIR / "recordings" / c)[0], dtype=torch.float32) for c in CLIPS[:n]]
    lengths = torch.tensor([len(w) for w in wav])
    wavs = torch.zeros(n, int(lengths.max()))
    for i, w in enumerate(wav):
        wavs[i, : len(w)] = w
    return {"wavs": wavs, "lengths": lengths, "text": TEXTS[:n], "index": torch.arange(n), "raw": wav}


def make_task(
    path, pad_to_30s=True, min_window_s=0.5, language=None, adapters=(None, None), **head
) -> Seq2SeqTask:
    backbone = WhisperEncoderBackbone(
        str(path), pad_to_30s=pad_to_30s, min_window_s=min_window_s, return_window=True, adapter=adapters[0]
    )
    return Seq2SeqTask(
        language=language,
        backbone=backbone,
        featurizer=LastLayer(num_layers=backbone.num_layers, hidden_size=backbone.hidden_size),
        head=partial(WhisperDecoderHead, name_or_path=str(path), adapter=adapters[1], **head),
        optimizer=partial(torch.optim.AdamW, lr=1e-4),
    ).eval()


def hf_reference(path, batch, language=None):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    proc = WhisperProcessor.from_pretrained(path)
    if language:
        proc.tokenizer.set_prefix_tokens(language=language, task="transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    raw = [w.numpy() for w in batch["raw"]]
    feats = proc.feature_extractor(raw, sampling_rate=16000, return_tensors="pt").input_features
    return proc, model, feats


@pytest.fixture(scope="module")
def tiny_en():
    if not (WHISPER_DIR.is_dir() and FSDD_DIR.is_dir()):
        pytest.skip("../shared whisper-tiny.en / fsdd absent")
    return make_task(WHISPER_DIR), clips()


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    """A small random multilingual Whisper saved as a checkpoint folder, with tiny.en's tokenizer files
    (which hold the language and task tokens) and a multilingual generation config."""
    if not WHISPER_DIR.is_dir():
        pytest.skip("../shared whisper-tiny.en tokenizer absent")
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = tmp_path_factory.mktemp("whisper_multi")
    torch.manual_seed(0)
    config = WhisperConfig(**TINY_WHISPER_CONFIG, vocab_size=51864, decoder_start_token_id=50257)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "normalizer.json"):
        shutil.copy(WHISPER_DIR / name, folder / name)
    shutil.copy(WHISPER_DIR / "preprocessor_config.json", folder / "preprocessor_config.json")
    gen = json.loads((WHISPER_DIR / "generation_config.json").read_text())
    gen.update(
        is_multilingual=True,
        lang_to_id={"<|en|>": 50258, "<|de|>": 50260},
        task_to_id={"transcribe": 50358, "translate": 50357},
    )
    (folder / "generation_config.json").write_text(json.dumps(gen))
    return folder


@needs_shared
def test_labels_equal_whisper_processor(tiny_en):
    task, batch = tiny_en
    from transformers import WhisperProcessor

    proc = WhisperProcessor.from_pretrained(WHISPER_DIR)
    for text in ["eight three zero four", "Hello, world."]:
        assert task.text.labels(text) == proc.tokenizer(text).input_ids
    ids = task.text.labels("three")
    assert (
        ids[:2] == [50257, 50362] and ids[-1] == 50256
    )  # sot, notimestamps ... eot (English-only: no lang/task)
    inputs, targets = task.text.teacher_forcing(["three", "eight three"])
    assert inputs[0, 0] == 50257 and targets[0, 0] == 50362 and (targets[0, len(ids) - 1 :] == -100).all()


@needs_shared
def test_loss_equals_hf_labels_and_greedy_equals_generate(tiny_en):
    task, batch = tiny_en
    proc, model, feats = hf_reference(WHISPER_DIR, batch)
    labels = proc.tokenizer(batch["text"], padding=True, return_tensors="pt")
    labels = labels.input_ids.masked_fill(labels.attention_mask.ne(1), -100)[:, 1:]  # the recipe's collator
    with torch.no_grad():
        ours = task.loss(batch)
        theirs = model(input_features=feats, labels=labels).loss
        assert abs(float(ours) - float(theirs)) <= TOL
        hyps = task.transcribe(batch)
        ids = model.generate(feats)
    assert hyps == [t.strip() for t in proc.batch_decode(ids, skip_special_tokens=True)]


@needs_shared
def test_generation_follows_the_checkpoints_generation_config(tiny_en, tmp_path):
    """suppress_tokens, begin_suppress_tokens and max_length come from generation_config.json; a folder
    without it stops with the file named (decoding without it got 51 % of FSDD digits wrong)."""
    task, _ = tiny_en
    shipped = json.loads((WHISPER_DIR / "generation_config.json").read_text())
    config = task.head.model.generation_config
    assert config.suppress_tokens == shipped["suppress_tokens"] and len(config.suppress_tokens) > 50
    assert config.begin_suppress_tokens == shipped["begin_suppress_tokens"]
    assert config.max_length == shipped["max_length"] == 448
    bare = tmp_path / "bare"
    shutil.copytree(WHISPER_DIR, bare)
    (bare / "generation_config.json").unlink()
    with pytest.raises(ValueError, match="generation_config.json"):
        WhisperDecoderHead(384, str(bare))


def test_encoder_only_checkpoint_names_the_missing_decoder():
    path = SHARED / "models" / "whisper-base"
    if not path.is_dir():
        pytest.skip("../shared whisper-base absent")
    with pytest.raises(ValueError, match="holds no decoder"):
        WhisperDecoderHead(512, str(path))


@needs_shared
def test_masked_batch_equals_each_clip_alone(tiny_en):
    """Clips of different lengths in one batch (encoder on the real length): the decoder's
    cross-attention masks the padded states, so each clip's logits equal the clip decoded alone."""
    task = make_task(WHISPER_DIR, pad_to_30s=False, min_window_s=0.0)
    batch = clips()
    with torch.no_grad():
        frames, lengths = task.encode(batch)
        inputs, _ = task.text.teacher_forcing(batch["text"])
        together = task.head(frames, lengths, inputs)
        assert len(set(lengths.tolist())) > 1
        for i, n in enumerate(lengths.tolist()):
            alone = task.head(frames[i : i + 1, :n], None, inputs[i : i + 1])
            assert float((together[i] - alone[0]).abs().max()) <= 1e-4
        hyps = task.transcribe(batch)
        one = [task.transcribe({k: v[i : i + 1] for k, v in batch.items() if k != "raw"}) for i in range(3)]
    assert hyps == [h[0] for h in one]


@needs_shared
def test_batched_greedy_equals_generate_clip_by_clip(tiny_en):
    """head.greedy decodes a batch of different encoder lengths at once (cross-attention masked, keys and
    values cached); its tokens equal transformers' ``generate`` run on each clip's own states, with the
    checkpoint's suppress lists and a max_new_tokens cap, padded with pad_token_id as ``generate`` pads."""
    from transformers.modeling_outputs import BaseModelOutput

    task = make_task(WHISPER_DIR, pad_to_30s=False, min_window_s=0.0)
    pad = task.head.model.generation_config.pad_token_id
    with torch.no_grad():
        frames, lengths = task.encode(clips())
        assert len(set(lengths.tolist())) > 1
        prefix = task.text.tokenizer.prefix_tokens
        for cap in (4, 32):
            ours = task.head.greedy(frames, lengths, prefix, cap)
            assert len({len(r) for r in ours}) == 1 and max(len(r) for r in ours) <= cap
            for i, n in enumerate(lengths.tolist()):
                states = BaseModelOutput(last_hidden_state=frames[i : i + 1, :n])
                theirs = task.head.model.generate(encoder_outputs=states, max_new_tokens=cap)[0].tolist()
                mine = ours[i][: len(theirs)]
                assert mine == theirs and all(t == pad for t in ours[i][len(theirs) :])


def test_multilingual_prefix_loss_and_generate(multilingual):
    """task.language=german: labels carry <|de|><|transcribe|>; loss and greedy decoding equal
    transformers' with language="german" on a random multilingual Whisper."""
    batch = clips(2) if FSDD_DIR.is_dir() else None
    if batch is None:
        pytest.skip("../shared fsdd absent")
    task = make_task(multilingual, language="german")
    assert task.text.labels("hallo")[:4] == [50257, 50260, 50358, 50362]
    proc, model, feats = hf_reference(multilingual, batch, language="german")
    labels = proc.tokenizer(batch["text"], padding=True, return_tensors="pt")
    assert labels.input_ids[0].tolist()[:4] == [50257, 50260, 50358, 50362]
    labels = labels.input_ids.masked_fill(labels.attention_mask.ne(1), -100)[:, 1:]
    with torch.no_grad():
        assert abs(float(task.loss(batch)) - float(model(input_features=feats, labels=labels).loss)) <= TOL
        theirs = model.generate(feats, language="german", task="transcribe", max_new_tokens=8)
        ours = task.head.generate(*task.encode(batch), **task.text.generate_kwargs(), max_new_tokens=8)
        prefix = task.text.prompt_ids + task.text.tokenizer.prefix_tokens
        batched = task.head.greedy(*task.encode(batch), prefix, max_new_tokens=8)
    assert ours == theirs.tolist() == batched
    with pytest.raises(ValueError, match="multilingual"):
        make_task(multilingual, language=None)


@pytest.mark.parametrize(
    "adapter,stacks", [(LoRA(rank=4), "both"), (Bottleneck(size=8), "decoder"), (LoRA(rank=4), "encoder")]
)
def test_adapter_counts_per_stack_and_gradients(multilingual, adapter, stacks):
    """Only the adapters (and the decoder parts set to train) get gradients; counts per stack add up."""
    enc = adapter if stacks in ("both", "encoder") else None
    dec = adapter if stacks in ("both", "decoder") else None
    task = make_task(multilingual, language="german", adapters=(enc, dec), freeze="all")
    task.train()
    batch = clips(2) if FSDD_DIR.is_dir() else pytest.skip("../shared fsdd absent")
    task.loss(batch).backward()
    counts = task.parameter_counts()
    got = {n for n, p in task.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert got <= trainable and all(("lora_" in n or "bottleneck_adapter" in n) for n in trainable)
    d, ffn = TINY_WHISPER_CONFIG["d_model"], TINY_WHISPER_CONFIG["encoder_ffn_dim"]
    if isinstance(adapter, LoRA):  # rank x (in + out) per adapted linear: 4 (8 in the decoder) d->d, fc1, fc2
        enc_layer, dec_layer = 4 * 4 * 2 * d + 2 * 4 * (d + ffn), 8 * 4 * 2 * d + 2 * 4 * (d + ffn)
    else:  # down (d x 8 + 8) and up (8 x d + d) after each block: 2 in the encoder, 3 in the decoder
        enc_layer, dec_layer = 2 * (2 * 8 * d + 8 + d), 3 * (2 * 8 * d + 8 + d)
    enc_expected = TINY_WHISPER_CONFIG["encoder_layers"] * enc_layer if enc is not None else 0
    dec_expected = TINY_WHISPER_CONFIG["decoder_layers"] * dec_layer if dec is not None else 0
    assert counts["params/encoder_trainable"] == enc_expected
    assert counts["params/decoder_trainable"] == dec_expected
    assert counts["params/trainable"] == enc_expected + dec_expected
    # the checkpoint keeps exactly what trains (adapters), not the frozen pretrained tensors
    kept = set(task.state_dict()) - task.untrained_keys()
    assert kept == {n for n in task.state_dict() if "lora_" in n or "bottleneck_adapter" in n}


def test_decoder_freeze_settings(multilingual):
    top = make_task(multilingual, language="german", freeze="top_k", top_k=1)
    names = {n for n, p in top.head.named_parameters() if p.requires_grad}
    assert names and all(
        n.startswith("model.model.decoder.layers.") or "decoder.layer_norm" in n for n in names
    )
    emb = make_task(multilingual, language="german", freeze="all", train_embeddings=True)
    names = {n for n, p in emb.head.named_parameters() if p.requires_grad}
    assert names == {"model.model.decoder.embed_tokens.weight", "model.model.decoder.embed_positions.weight"}
    assert emb.head.model.proj_out.weight is emb.head.decoder.embed_tokens.weight  # tied: trains with it


def test_hallucination_rule():
    assert hallucinated("one two", "") and hallucinated("one two", "[BLANK_AUDIO]")
    assert hallucinated("one", "one one one one") and not hallucinated("one two", "one three")


def test_merged_decoder_lora_gives_the_same_logits(multilingual):
    """adapter.merge=true (predict.py) folds the decoder's LoRA: same logits, no LoRA layers left."""
    from peft.tuners.lora import LoraLayer

    if not FSDD_DIR.is_dir():
        pytest.skip("../shared fsdd absent")
    task = make_task(multilingual, language="german", adapters=(None, LoRA(rank=4)), freeze="all")
    torch.manual_seed(0)
    for name, p in task.head.named_parameters():
        if "lora_B" in name:  # a trained update (B starts at zero)
            p.data.normal_(0, 0.1)
    batch = clips(2)
    with torch.no_grad():
        frames, lengths = task.encode(batch)
        inputs, _ = task.text.teacher_forcing(batch["text"])
        before = task.head(frames, lengths, inputs)
        task.head.adapter.merge(task.head)
        after = task.head(frames, lengths, inputs)
    assert not any(isinstance(m, LoraLayer) for m in task.head.modules())
    assert float((before - after).abs().max()) <= 1e-4


def test_transcript_longer_than_the_decoder_is_named_by_manifest_and_row(multilingual):
    task = make_task(multilingual, language="german")
    task.check_lengths([("train.jsonl", 2, "eins zwei")])  # fits
    with pytest.raises(
        ValueError, match=r"the transcript takes \d+ decoder positions .*, train.jsonl, line 7, field 'text'"
    ):
        task.check_lengths([("train.jsonl", 7, "eins zwei drei " * 200)])


def test_layer_lr_decay_covers_both_stacks(multilingual):
    """task.layer_lr_decay: each stack's top layer at its own rate (encoder: backbone_lr, decoder:
    optimizer.lr), each layer below times the decay; frozen parts hold no group."""
    task = make_task(multilingual, language="german", adapters=(LoRA(rank=2), None))
    task.backbone_lr, task.layer_lr_decay = 1e-3, 0.5
    groups = {g["name"]: g["lr"] for g in task.param_groups(base_lr=1e-2)}
    n_enc = TINY_WHISPER_CONFIG["encoder_layers"]
    assert groups[f"backbone.layer{n_enc}"] == pytest.approx(1e-3)
    assert groups[f"backbone.layer{n_enc - 1}"] == pytest.approx(5e-4)
    assert groups[f"decoder.layer{TINY_WHISPER_CONFIG['decoder_layers']}"] == pytest.approx(1e-2)
    assert "head" not in groups
