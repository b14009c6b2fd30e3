"""common/: one `--set` grammar for every command line, one atomic JSON writer, one git SHA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.configfile import ConfigFileError, apply_overrides, parse_override, renamed_keys
from common.runfiles import git_sha, write_json
from tests.paths import ROOT


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("x='foo'", "foo"),  # TOML literal string (JSON would keep the quotes)
        ('x="foo"', "foo"),
        ("x=foo", "foo"),  # not TOML: the plain string
        ("x=3", 3),
        ("x=0.5", 0.5),
        ("x=true", True),
        ('x=["a", "b"]', ["a", "b"]),
        ("x={a = 1}", {"a": 1}),
        ("x = 2 ", 2),
    ],
)
def test_set_values_are_toml(item: str, value: object) -> None:
    assert parse_override(item) == (["x"], value)


def test_every_cli_reads_set_the_same_way(tmp_path: Path) -> None:
    """Regression (issue 16): `--set x='foo'` was "foo" for train/export and "'foo'" for eval."""
    from evaluation.config import load_config as load_eval
    from exporter.config import load_config as load_export
    from trainer.config import load_config as load_train

    train_toml = tmp_path / "t.toml"
    train_toml.write_text('base_model = "m"\ndataset = "esconv:train"\n')
    assert load_train(train_toml, ["name='quoted'"]).name == "quoted"
    assert load_export(None, ["default_quant='Q8_0'"]).default_quant == "Q8_0"
    assert load_eval(None, ["generate.model='quoted'"]).generate.model == "quoted"


def test_dotted_keys_reach_into_sections_and_errors_name_the_item() -> None:
    data = apply_overrides({"a": {"b": 1}, "c": 2}, ["a.d=3", "e.f='g'"])
    assert data == {"a": {"b": 1, "d": 3}, "c": 2, "e": {"f": "g"}}
    with pytest.raises(ConfigFileError, match="key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigFileError, match="c is not a section"):
        apply_overrides({"c": 2}, ["c.d=1"])


def test_renamed_keys_warn_and_refuse_both() -> None:
    with pytest.warns(FutureWarning, match="s.old is now called s.new"):
        assert renamed_keys({"old": 1}, {"old": "new"}, "s") == {"new": 1}
    assert renamed_keys({"new": 1}, {"old": "new"}, "s") == {"new": 1}
    with pytest.raises(ValueError, match="set only s.new"):
        renamed_keys({"old": 1, "new": 2}, {"old": "new"}, "s")


def test_write_json_never_leaves_half_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 16): the trainer wrote its manifest in place; a failed write (disk
    full) left a truncated manifest.json that the exporter then could not read."""
    from trainer.outputs import write_manifest

    run = tmp_path / "run"
    run.mkdir()
    write_manifest(run, {"stage": "train", "metrics": {"loss": 1.0}})
    before = (run / "manifest.json").read_text()
    real = Path.write_text

    def disk_full(self: Path, data: str, *args: object, **kwargs: object) -> int:
        real(self, data[: len(data) // 2], *args, **kwargs)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        write_manifest(run, {"stage": "train", "metrics": {"loss": 0.5}})
    monkeypatch.undo()
    assert (run / "manifest.json").read_text() == before
    assert json.loads(before)["metrics"] == {"loss": 1.0}
    write_json(run / "x.json", {"path": run, "text": "é"})  # Paths as strings, UTF-8 as is
    assert json.loads((run / "x.json").read_text(encoding="utf-8")) == {
        "path": str(run),
        "text": "é",
    }


def test_git_sha_is_this_checkout() -> None:
    root = ROOT
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert git_sha() == head.stdout.strip()


PACKAGES_WITH_EXPORTS = (
    "bot.adapters", "bot.audit", "bot.backends", "bot.config", "bot.engine", "bot.memory",
    "bot.ops", "bot.safety", "bot.web",
)  # fmt: skip


@pytest.mark.parametrize("package", PACKAGES_WITH_EXPORTS)
def test_every_re_exported_name_resolves_lazily(package: str) -> None:
    """A package's public names (its TYPE_CHECKING imports) are the objects of its modules."""
    import importlib

    from common.lazy import declared_exports

    module = importlib.import_module(package)
    exports = declared_exports(module.__file__)
    assert exports, f"{package} declares no exports"
    for name, (source, attribute) in exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), attribute)
        assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_help_imports_no_package_body() -> None:
    """`solace --help` imports the command modules only, not what their packages re-export."""
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom bot.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "body = ['bot.safety.screen', 'bot.memory.store', 'bot.engine.engine', "
        "'bot.adapters.telegram', 'bot.audit.jobs', 'bot.ops.health', 'bot.web.app', "
        "'starlette', 'pydantic_settings']\n"
        "print([m for m in body if m in sys.modules])\n"
    )
    root = ROOT
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
