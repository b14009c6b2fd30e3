"""`Settings`: everything the bot reads at start-up, frozen, built once by `load_settings`.

Sources, highest priority first: arguments given in code > environment (`SOLACE_` prefix, `__`
between nested names, e.g. `SOLACE_MEMORY__DB_PATH`) > a TOML file (`--config`, else
`SOLACE_CONFIG`, else `./config.toml` when present). Secrets (tokens, API keys, the pseudonym
secret) are read from the environment only; a TOML file that contains one is rejected. Unknown keys
are rejected with a message naming them.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.config.llama_server import LlamaServerSettings
from bot.config.safety import SafetySettings
from bot.config.sections import (
    AccessSettings,
    BackupSettings,
    DiscordSettings,
    GenerationSettings,
    JobsSettings,
    MemorySettings,
    ModelSettings,
    OpenAISettings,
    TelegramSettings,
)
from bot.config.web import WebSettings
from bot.errors import ConfigError

SECRET_FIELDS = (
    "telegram_token",
    "discord_token",
    "openai_api_key",
    "pseudonym_secret",
    "telegram_webhook_secret",
)
DEFAULT_CONFIG_NAME = "config.toml"
# Set by load_settings() so the TOML source knows which file to read for this one construction.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("solace_config_file", default=None)


class _StrictTomlSource(TomlConfigSettingsSource):
    """The TOML source, refusing secrets (they belong in the environment)."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path | None) -> None:
        super().__init__(settings_cls, toml_file=toml_file)
        found = [key for key in SECRET_FIELDS if key in self.toml_data]
        if found:
            names = ", ".join(f"SOLACE_{key.upper()}" for key in found)
            raise ConfigError(
                f"{toml_file}: {', '.join(found)} must not be in a config file; "
                f"set the environment variable(s) {names} instead"
            )


def _config_file() -> Path | None:
    explicit = _CONFIG_FILE.get()
    if explicit is not None:
        return explicit
    from_env = os.environ.get("SOLACE_CONFIG")
    if from_env:
        return Path(from_env)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Everything the bot reads at start-up. Frozen; build once in main() and pass it down."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="SOLACE_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    llama_server: LlamaServerSettings = Field(default_factory=LlamaServerSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    telegram_token: SecretStr | None = Field(None, description="SOLACE_TELEGRAM_TOKEN (env only).")
    discord_token: SecretStr | None = Field(None, description="SOLACE_DISCORD_TOKEN (env only).")
    openai_api_key: SecretStr | None = Field(None, description="SOLACE_OPENAI_API_KEY (env only).")
    pseudonym_secret: SecretStr | None = Field(
        None, description="SOLACE_PSEUDONYM_SECRET (env only): key for user pseudonyms."
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None,
        description="SOLACE_TELEGRAM_WEBHOOK_SECRET (env only): the secret_token Telegram sends "
        "with every webhook request; empty = a new one at each start (one process only).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """init args > environment > TOML file."""
        return (init_settings, env_settings, _StrictTomlSource(settings_cls, _config_file()))


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        else:
            lines.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, turning every problem into a ConfigError that names it.

    Args:
        config_file: a TOML file to read; it must exist. None = SOLACE_CONFIG or ./config.toml.
        overrides: values that win over everything else (e.g. from command-line options).
    """
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist or is not a file")
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        source = config_file or _config_file() or "environment"
        raise ConfigError(f"invalid settings ({source}): {_describe(exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file or _config_file()}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc}") from None
    finally:
        _CONFIG_FILE.reset(token)
