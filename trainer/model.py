"""The base model: locate it, convert a GGUF to a cached safetensors model, attach the method.

`resolve_base` is cheap (no torch) and runs before anything heavy, so a missing model is a clear
error at once. A GGUF base is loaded with transformers' GGUF reader (dequantized), rebuilt as a
plain model from its config and state dict (the GGUF-loaded model refuses `save_pretrained`) and
cached as safetensors under `base_cache_dir`. Hub ids are only fetched with `allow_download`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from trainer.config import TrainConfig

logger = logging.getLogger(__name__)

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HASH_CHUNK_BYTES = 1 << 20


class ModelError(ValueError):
    """The base model cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class BaseSource:
    """Where the base model comes from: a HF directory, a GGUF file or a hub id."""

    kind: Literal["hf_dir", "gguf", "hub"]
    location: str  # directory, .gguf file, or hub id
    spec: str  # what the config said

    def manifest(self, hf_dir: str) -> dict[str, Any]:
        """The `base_model` entry of manifest.json."""
        return {
            "id_or_path": self.spec,
            "gguf": self.location if self.kind == "gguf" else None,
            "hf_dir": hf_dir,
        }


def resolve_package_file(ref: str) -> Path:
    """`pkg:<package>/<file>` → the file inside the installed package (without importing it)."""
    package, _, rel = ref.removeprefix("pkg:").partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"base_model {ref!r}: Python package {package!r} is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / rel
        if candidate.is_file():
            return candidate
    raise ModelError(f"base_model {ref!r}: no file {rel!r} inside package {package!r}")


def resolve_base(cfg: TrainConfig) -> BaseSource:
    """Classify and check `base_model` without loading anything heavy."""
    if cfg.chat_template:
        read_chat_template(cfg.chat_template)
    spec = cfg.base_model
    if spec.startswith("pkg:"):
        return BaseSource("gguf", str(resolve_package_file(spec)), spec)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelError(f"base_model {spec!r} is a file but not a .gguf")
        return BaseSource("gguf", str(path.resolve()), spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"base_model {spec!r} is a directory without config.json")
        return BaseSource("hf_dir", str(path.resolve()), spec)
    if HUB_ID_RE.match(spec) and not spec.endswith(".gguf"):
        if not cfg.allow_download:
            raise ModelError(
                f"base_model {spec!r} is not a local directory. As a Hugging Face hub id it "
                "would be downloaded: set allow_download = true, or point base_model at a "
                "local copy (a HF directory or a .gguf file)"
            )
        return BaseSource("hub", spec, spec)
    raise ModelError(f"base_model {spec!r} does not exist")


def file_digest(path: Path) -> str:
    """sha256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def convert_gguf(gguf: Path, cache_root: Path) -> Path:
    """A plain safetensors HF directory for this GGUF, converted once and cached."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = file_digest(gguf)
    out = cache_root / f"{gguf.stem}-{digest[:12]}"
    if (out / "config.json").is_file() and (out / "source.json").is_file():
        return out
    logger.info("converting %s to a safetensors base in %s", gguf.name, out)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    # A GGUF-loaded config keeps quantization_config {"quant_method": "gguf"}: from_pretrained
    # would then look for the .gguf again, and llama.cpp's converters refuse it. The rebuilt model
    # is plain float32, so the key goes.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if loaded.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelError(f"GGUF {gguf}: weights do not match its config ({missing}, {unexpected})")
    tmp = out.with_name(out.name + ".tmp")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    source = {"gguf": str(gguf), "sha256": digest, "converted_with": "transformers gguf_file"}
    (tmp / "source.json").write_text(json.dumps(source, indent=2))
    if out.exists():  # a half-written cache from an interrupted run
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def prepare_base(source: BaseSource, cfg: TrainConfig) -> str:
    """The directory (or, with allow_download, hub id) that from_pretrained will read."""
    if source.kind == "gguf":
        # absolute: the exporter resolves relative paths against the run directory
        return str(convert_gguf(Path(source.location), Path(cfg.base_cache_dir)).resolve())
    return source.location


def read_chat_template(value: str) -> str:
    """A template given inline, or as a path to a .jinja file (relative to the working dir)."""
    if value.endswith(".jinja"):
        path = Path(value)
        if not path.is_file():
            raise ModelError(
                f"chat_template file {value!r} not found (paths are relative to "
                "the directory solace train runs in)"
            )
        return path.read_text(encoding="utf-8")
    return value


def load_tokenizer(base: str, cfg: TrainConfig) -> Any:
    """The base tokenizer, with the config's chat template and a pad token."""
    from transformers import AutoTokenizer

    local_only = not cfg.allow_download
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=local_only)
    if cfg.chat_template:
        tokenizer.chat_template = read_chat_template(cfg.chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: str, cfg: TrainConfig, device_index: int | None) -> Any:
    """The base causal LM in fp32 (or 4-bit NF4 for QLoRA), with the config's method attached
    (`trainer.methods`: LoRA, adaption prompt or full)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"local_files_only": not cfg.allow_download}
    if cfg.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": device_index or 0}
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **kwargs)
    model.config.use_cache = False
    if cfg.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing
        )
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    from trainer.methods import attach

    return attach(model, cfg)


def hold_frozen_linears_in(model: Any, dtype: torch.dtype) -> int:
    """Store the frozen weights of the decoder's Linear layers in `dtype`; returns how many.

    Under autocast to `dtype`, a Linear casts its weight to `dtype` on every call, and autocast
    keeps no cast copy of weights that need no gradient, so the frozen base weights were cast
    again at every forward. Casting them once gives the same numbers (the same rounding, once).
    The LoRA matrices (trainable, fp32 master weights) and the tied embedding / lm_head are
    left alone. Only for a run that computes under autocast to `dtype`.
    """
    import torch

    tied = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    count = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (
            isinstance(module, torch.nn.Linear)
            and weight is not None
            and not weight.requires_grad
            and id(weight) not in tied
        ):
            module.to(dtype)
            count += 1
    return count


def target_only_lm(peft_model: Any) -> torch.nn.Module:
    """Wrap a causal LM (peft-wrapped or, for a full fine-tune, plain) so forward returns
    (sum of target losses, number of targets).

    The vocabulary projection dominates small models, so logits are computed only at positions
    whose next token is a target: the decoder gives hidden states, we gather the target positions
    and apply lm_head there. Being an nn.Module, it can be wrapped by DDP / DeepSpeed.
    """
    import torch
    import torch.nn.functional as F

    class TargetOnlyLM(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            from trainer.methods import base_of

            self.model = model
            base = base_of(model)
            self.decoder = base.get_decoder()
            self.lm_head = base.get_output_embeddings()
            self.softcap = getattr(base.config, "final_logit_softcapping", None)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            # Right padding under a causal mask: no real token attends to a later position, so
            # the padding mask changes nothing a target depends on. Without it, attention takes
            # SDPA's is_causal path, which skips the masked half instead of computing it.
            right_padded = bool(
                attention_mask[:, 0].all() & (attention_mask[:, :-1] >= attention_mask[:, 1:]).all()
            )
            hidden = self.decoder(
                input_ids=input_ids, attention_mask=None if right_padded else attention_mask
            )[0]
            targets = labels[:, 1:]
            mask = targets != -100
            logits = self.lm_head(hidden[:, :-1][mask]).float()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            loss_sum = F.cross_entropy(logits, targets[mask], reduction="sum")
            return loss_sum, mask.sum()

    return TargetOnlyLM(peft_model)
