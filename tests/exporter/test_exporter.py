"""Exporter tests that need no model: configs, run manifests, CLI errors, the tools fetcher."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.config import (
    DEFAULT_MAX_PPL_INCREASE,
    ExportConfigError,
    load_config,
    read_run_manifest,
    resolve_ref,
)
from tests.paths import ROOT

EXPORT_CONFIGS = sorted((ROOT / "configs" / "export").glob("*.toml"))


def test_the_shipped_export_configs_are_found() -> None:
    """Guards the parametrized tests over EXPORT_CONFIGS against an empty glob."""
    assert {p.name for p in EXPORT_CONFIGS} >= {"default.toml", "smollm2-adapter.toml"}


def _fetch_module():
    spec = importlib.util.spec_from_file_location(
        "fetch_llama_tools", ROOT / "scripts" / "fetch_llama_tools.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_llama_tools"] = module
    spec.loader.exec_module(module)
    return module


def fake_run(tmp_path: Path, **manifest_overrides: object) -> Path:
    """A run directory with the files the manifest reader checks (no weights)."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (base / "tokenizer.json").write_text("{}")
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"x" * 10)
    manifest = {
        "stage": "train",
        "base_model": {"id_or_path": "tiny", "gguf": None, "hf_dir": str(base)},
        "chat_template": "{{ messages }}",
        "context_representation": "hybrid",
        "strategy_conditioning": "none",
        "artifacts": {"adapter_dir": "adapter"},
        **manifest_overrides,
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.mark.parametrize("path", EXPORT_CONFIGS, ids=lambda p: p.name)
def test_every_export_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.quants or cfg.adapter_only


def test_export_configs_exist() -> None:
    names = {p.name for p in EXPORT_CONFIGS}
    assert {"default.toml", "smollm2-adapter.toml"} <= names


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["quants=['Q3_X']"], "unknown type"),
        (["colour=1"], "unknown key"),
        (["quants=['Q8_0', 'Q8_0']"], "duplicates"),
        (["default_quant='Q4_1'"], "default_quant"),
        (["eval_dialogues=0"], "eval_dialogues"),
        (["noequals"], "key=value"),
    ],
)
def test_bad_config_names_the_key(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ExportConfigError, match=fragment):
        load_config(None, overrides)


def test_overrides_are_read_as_toml() -> None:
    cfg = load_config(None, ["quants=['Q4_1']", "eval_dialogues=3", "eval_spec=esconv:valid"])
    assert cfg.quants == ("Q4_1",)
    assert cfg.eval_dialogues == 3
    assert cfg.eval_spec == "esconv:valid"
    assert cfg.chosen_gguf_kind() == "Q4_1"


def test_ppl_bounds_merge_with_defaults() -> None:
    cfg = load_config(None, ["max_ppl_increase={Q8_0 = 0.5}"])
    assert cfg.ppl_bound("q8_0") == 0.5
    assert cfg.ppl_bound("F16") == DEFAULT_MAX_PPL_INCREASE["F16"]


def test_read_run_manifest(tmp_path: Path) -> None:
    run = read_run_manifest(fake_run(tmp_path))
    assert run.adapter_dir.name == "adapter"
    assert run.tokenizer_dir == tmp_path / "base"  # no tokenizer in the run: the base's
    assert run.context_representation == "hybrid"


def test_manifest_problems_are_listed_together(tmp_path: Path) -> None:
    run = fake_run(tmp_path, base_model={"hf_dir": str(tmp_path / "nowhere")})
    (run / "adapter" / "adapter_config.json").unlink()
    with pytest.raises(ValueError) as err:
        read_run_manifest(run)
    assert "not a Hugging Face model directory" in str(err.value)
    assert "adapter_config.json" in str(err.value)


def test_resolve_pkg_ref_and_missing_package() -> None:
    assert resolve_ref("pkg:click/core.py").name == "core.py"
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_ref("pkg:no_such_package_xyz/model.gguf")


def test_cli_run_dir_without_manifest(tmp_path: Path) -> None:
    from exporter.cli import export

    result = CliRunner().invoke(export, [str(tmp_path)])
    assert result.exit_code != 0
    assert "no manifest.json" in result.output


def test_cli_missing_converter_says_make_tools(tmp_path: Path, monkeypatch) -> None:
    from exporter.cli import export

    monkeypatch.setenv("SOLACE_LLAMA_TOOLS", str(tmp_path / "no-tools"))
    result = CliRunner().invoke(export, [str(fake_run(tmp_path))])
    assert result.exit_code != 0
    assert "make tools" in result.output


def test_cli_too_little_disk(tmp_path: Path, monkeypatch) -> None:
    from exporter import pipeline
    from exporter.cli import export

    tools = tmp_path / "tools"
    (tools / "gguf-py" / "gguf").mkdir(parents=True)
    (tools / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (tools / "convert_hf_to_gguf.py").write_text("")
    monkeypatch.setenv("SOLACE_LLAMA_TOOLS", str(tools))
    monkeypatch.setattr(pipeline, "free_bytes", lambda path: 1000)
    run = fake_run(tmp_path)
    (tmp_path / "base" / "model.safetensors").write_bytes(b"\0" * 4096)
    result = CliRunner().invoke(export, [str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "not enough disk space" in result.output


def test_adapter_only_without_base_gguf_is_refused(tmp_path: Path, monkeypatch) -> None:
    from exporter.cli import export

    tools = tmp_path / "tools"
    (tools / "gguf-py" / "gguf").mkdir(parents=True)
    (tools / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (tools / "convert_lora_to_gguf.py").write_text("")
    monkeypatch.setenv("SOLACE_LLAMA_TOOLS", str(tools))
    result = CliRunner().invoke(export, [str(fake_run(tmp_path)), "--adapter-only"])
    assert result.exit_code != 0
    assert "base GGUF" in result.output


def test_solace_lists_export_command() -> None:
    from bot.cli import cli

    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0
    assert "--adapter-only" in result.output


def _sdist(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_fetch_tools_extracts_only_what_converters_need(tmp_path: Path) -> None:
    fetch = _fetch_module()
    llama = "vendor/llama.cpp/"
    sdist = _sdist(
        tmp_path / "s.tar.gz",
        {
            f"{llama}convert_hf_to_gguf.py": "# hf",
            f"{llama}convert_lora_to_gguf.py": "# lora",
            f"{llama}conversion/__init__.py": "",
            f"{llama}gguf-py/gguf/__init__.py": "",
            f"{llama}gguf-py/gguf/gguf_writer.py": "",
            f"{llama}src/llama.cpp": "// not needed",
            "llama_cpp/llama.py": "# not needed",
        },
    )
    target = fetch.fetch("9.9.9", tmp_path / "tools", sdist=sdist)
    assert (target / "convert_hf_to_gguf.py").read_text() == "# hf"
    assert (target / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    assert not (target / "src").exists()
    assert fetch.is_installed(target, "9.9.9")
    assert not fetch.is_installed(target, "9.9.8")
    # Idempotent: a second call does not need the sdist at all.
    assert fetch.fetch("9.9.9", tmp_path / "tools", sdist=tmp_path / "gone.tar.gz") == target


def test_fetch_tools_rejects_sdist_without_converters(tmp_path: Path, capsys) -> None:
    fetch = _fetch_module()
    sdist = _sdist(tmp_path / "s.tar.gz", {"vendor/llama.cpp/README.md": "x"})
    code = fetch.main(["--version", "1.0", "--dest", str(tmp_path / "t"), "--sdist", str(sdist)])
    assert code == 1
    assert "does not carry llama.cpp's conversion scripts" in capsys.readouterr().err
    assert not (tmp_path / "t" / "llama.cpp").exists()


def test_full_fine_tune_manifest_and_adapter_only_refusal(tmp_path: Path, monkeypatch) -> None:
    from exporter.cli import export

    run = fake_run(tmp_path, method="full", artifacts={"model_dir": "model"})
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    parsed = read_run_manifest(run)
    assert parsed.method == "full" and parsed.adapter_dir is None
    assert parsed.weights_dir == run / "model"
    tools = tmp_path / "tools"
    (tools / "gguf-py" / "gguf").mkdir(parents=True)
    (tools / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (tools / "convert_lora_to_gguf.py").write_text("")
    monkeypatch.setenv("SOLACE_LLAMA_TOOLS", str(tools))
    result = CliRunner().invoke(export, [str(run), "--adapter-only", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "full fine-tune" in result.output and "without --adapter-only" in result.output
    assert not (tmp_path / "o").exists()


def test_adaption_prompt_run_is_refused_with_where_to_evaluate_it(tmp_path: Path) -> None:
    run = fake_run(tmp_path, method="adaption_prompt")
    with pytest.raises(ValueError, match="llama.cpp has no such adapter.*--model"):
        read_run_manifest(run)
