"""Settings: sources and their priority, strictness, and the shipped example file."""

from __future__ import annotations

import pytest

from bot.backends import gen_options
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from tests.paths import ROOT

EXAMPLE = ROOT / "configs" / "bot.example.toml"
OWN_SECTIONS = ("model", "llama_server", "generation", "memory", "openai")


pytestmark = pytest.mark.usefixtures("clean_env")  # settings only from what each test sets


def test_generation_defaults_are_the_papers_table_3():
    options = gen_options(Settings())
    assert (options.temperature, options.top_p, options.top_k, options.max_new_tokens) == (
        0.7,
        0.95,
        50,
        128,
    )


def test_example_file_validates_and_sets_every_engine_key():
    settings = load_settings(EXAMPLE)
    assert settings.model.backend == "auto"
    text = EXAMPLE.read_text()
    for section in OWN_SECTIONS:
        for key in type(getattr(settings, section)).model_fields:
            assert f"{key} =" in text, f"{section}.{key} is missing from {EXAMPLE.name}"


def test_docs_describe_every_key_with_its_env_var():
    docs = (ROOT / "docs" / "bot.md").read_text()
    settings = Settings()
    for section in OWN_SECTIONS:
        for key in type(getattr(settings, section)).model_fields:
            assert f"SOLACE_{section.upper()}__{key.upper()}" in docs, f"{section}.{key}"


def test_priority_init_over_env_over_toml(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text("[generation]\ntemperature = 0.2\ntop_k = 10\n[memory]\nraw_recent = 2\n")
    monkeypatch.setenv("SOLACE_GENERATION__TEMPERATURE", "0.4")
    monkeypatch.setenv("SOLACE_MEMORY__DB_PATH", str(tmp_path / "env.db"))
    settings = load_settings(config, generation={"top_p": 0.5})
    g = settings.generation
    assert (g.temperature, g.top_k, g.top_p) == (0.4, 10, 0.5)  # env, toml, init
    assert settings.memory.raw_recent == 2
    assert settings.memory.db_path == tmp_path / "env.db"


def test_config_file_from_env_and_cwd(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("[memory]\nretention_days = 7\n")
    assert load_settings().memory.retention_days == 7
    other = tmp_path / "other.toml"
    other.write_text("[memory]\nretention_days = 30\n")
    monkeypatch.setenv("SOLACE_CONFIG", str(other))
    assert load_settings().memory.retention_days == 30


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[model]\nbakend = 'echo'\n", "unknown key 'model.bakend'"),
        ("colour = 'blue'\n", "unknown key 'colour'"),
        ("[generation]\ntemperature = 7\n", "generation.temperature"),
        ("[model]\nbackend = 'gpt'\n", "model.backend"),
        ("[memory]\ncontext_representation = 'zip'\n", "memory.context_representation"),
        ("[memory\n", "not valid TOML"),
        ("pseudonym_secret = 'abc'\n", "SOLACE_PSEUDONYM_SECRET"),
        ("openai_api_key = 'sk-1'\n", "SOLACE_OPENAI_API_KEY"),
    ],
)
def test_bad_files_fail_with_a_message_naming_the_problem(tmp_path, toml, message):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(config)


def test_renamed_keys_still_work_for_one_release_with_a_warning(tmp_path, monkeypatch):
    """Issue 16: one name per setting; the old names keep working, with a FutureWarning."""
    config = tmp_path / "old.toml"
    config.write_text("[memory]\nrepresentation = 'keypos'\n[jobs]\njudge_sample = 7\n")
    with pytest.warns(FutureWarning) as caught:
        settings = load_settings(config)
    assert settings.memory.context_representation == "keypos"
    assert settings.jobs.judge_conversations == 7
    said = " ".join(str(w.message) for w in caught)
    assert "memory.context_representation" in said and "jobs.judge_conversations" in said
    monkeypatch.setenv("SOLACE_MEMORY__REPRESENTATION", "raw")
    with pytest.warns(FutureWarning, match="memory.representation is now called"):
        assert load_settings().memory.context_representation == "raw"


def test_old_and_new_name_together_is_an_error(tmp_path):
    config = tmp_path / "both.toml"
    config.write_text("[memory]\nrepresentation = 'raw'\ncontext_representation = 'keypos'\n")
    with pytest.raises(ConfigError, match="set only memory.context_representation"):
        load_settings(config)


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("SOLACE_GENERATION__MAX_NEW_TOKENS", "lots")
    with pytest.raises(ConfigError, match="generation.max_new_tokens"):
        load_settings()


def test_secrets_come_from_the_environment_and_stay_hidden(monkeypatch):
    monkeypatch.setenv("SOLACE_PSEUDONYM_SECRET", "s3cret-value-0123456789")
    monkeypatch.setenv("SOLACE_OPENAI_API_KEY", "sk-test")
    settings = load_settings()
    assert settings.pseudonym_secret is not None
    assert settings.pseudonym_secret.get_secret_value() == "s3cret-value-0123456789"
    assert "s3cret" not in repr(settings) and "sk-test" not in str(settings.model_dump())


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(ValueError):
        settings.generation.temperature = 0.1  # type: ignore[misc]
