"""The trainer's speed-ups change no numbers: attention without the padding mask on right-padded
batches, and frozen Linear weights held in bf16 under bf16 autocast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer.helpers import make_dialogues
from trainer.config import TrainConfig

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _cfg(tiny_dir: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "name": "tiny", "base_model": str(tiny_dir), "dataset": "esconv:train",
        "max_seq_len": 128, "history_tokens": 16, "use_system_prompt": False,
        "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "device": "cpu", "precision": "fp32",
    }  # fmt: skip
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _model_and_batch(tiny_dir: Path) -> tuple[Any, dict[str, Any]]:
    from trainer import train as t
    from trainer.batches import build_samples, collate

    cfg = _cfg(tiny_dir)
    tokenizer = t.load_tokenizer(str(tiny_dir), cfg)
    samples, _ = build_samples(make_dialogues(3, exchanges=3), tokenizer, cfg)
    picked = sorted(samples, key=lambda s: len(s.input_ids))[:: max(1, len(samples) // 3)][:3]
    assert len({len(s.input_ids) for s in picked}) > 1, "the batch must need padding"
    torch.manual_seed(0)
    model = t.load_model(str(tiny_dir), cfg, None)
    return model, collate(picked, tokenizer.pad_token_id, "cpu")


def _decoder_masks(net: Any) -> list[Any]:
    seen: list[Any] = []
    net.decoder.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True
    )
    return seen


def _hf_loss_sum(model: Any, batch: dict[str, Any]) -> Any:
    """The summed target loss the plain model computes with its padding mask."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum"
    )


def test_right_padded_batch_drops_the_mask_and_keeps_the_loss(tiny_dir: Path) -> None:
    from trainer.model import target_only_lm

    model, batch = _model_and_batch(tiny_dir)
    net = target_only_lm(model)
    masks = _decoder_masks(net)
    loss_sum, n = net(**batch)
    assert masks == [None]  # attention ran causal-only
    assert int(n) == int((batch["labels"][:, 1:] != -100).sum())
    assert torch.allclose(loss_sum, _hf_loss_sum(model, batch), rtol=1e-5, atol=1e-5)
    loss_sum.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    _hf_loss_sum(model, batch).backward()
    for k, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, grads[k], rtol=1e-4, atol=1e-6), k


def test_left_padded_batch_keeps_its_mask(tiny_dir: Path) -> None:
    from trainer.model import target_only_lm

    model, batch = _model_and_batch(tiny_dir)
    width = batch["input_ids"].shape[1]
    lengths = batch["attention_mask"].sum(1)
    left = {k: torch.stack([row.roll(int(width - n)) for row, n in zip(v, lengths, strict=True)])
            for k, v in batch.items()}  # fmt: skip
    net = target_only_lm(model)
    masks = _decoder_masks(net)
    loss_sum, _ = net(**left)
    assert masks[0] is left["attention_mask"]
    # left padding shifts positions, so compare with the plain model on the same left-padded batch
    assert torch.allclose(loss_sum, _hf_loss_sum(model, left), rtol=1e-5, atol=1e-5)


def test_frozen_linears_in_bf16_compute_the_same_under_autocast(tiny_dir: Path) -> None:
    from trainer.model import hold_frozen_linears_in, target_only_lm

    results = []
    for cast in (False, True):
        model, batch = _model_and_batch(tiny_dir)
        if cast:
            assert hold_frozen_linears_in(model, torch.bfloat16) == 2 * 7  # 2 layers × 7 Linear
            trainable = [p for p in model.parameters() if p.requires_grad]
            assert trainable and all(p.dtype == torch.float32 for p in trainable)
            assert model.get_input_embeddings().weight.dtype == torch.float32
        net = target_only_lm(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_sum, _ = net(**batch)
        loss_sum.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        results.append((loss_sum.detach(), grads))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)
