"""The bot's settings: one frozen `Settings`, read once at start-up and passed down.

`sections` (one class per area: model, generation, memory, openai, safety, telegram, discord,
access, jobs, backup), `settings` (`Settings`, its sources and `load_settings`) and `options`
(the `--config`/`--db` options of the `solace` commands). Every key is documented in docs/bot.md.
"""

from bot.config.options import config_option, db_option, settings_or_exit
from bot.config.sections import (
    REPRESENTATIONS,
    AccessSettings,
    BackupSettings,
    DiscordSettings,
    GenerationSettings,
    JobsSettings,
    MemorySettings,
    ModelSettings,
    OpenAISettings,
    SafetySettings,
    TelegramSettings,
    default_db_path,
)
from bot.config.settings import DEFAULT_CONFIG_NAME, SECRET_FIELDS, Settings, load_settings

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "REPRESENTATIONS",
    "SECRET_FIELDS",
    "AccessSettings",
    "BackupSettings",
    "DiscordSettings",
    "GenerationSettings",
    "JobsSettings",
    "MemorySettings",
    "ModelSettings",
    "OpenAISettings",
    "SafetySettings",
    "Settings",
    "TelegramSettings",
    "config_option",
    "db_option",
    "default_db_path",
    "load_settings",
    "settings_or_exit",
]
