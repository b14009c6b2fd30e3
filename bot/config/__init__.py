"""The bot's settings: one frozen `Settings`, read once at start-up and passed down.

`sections` (one class per area: model, generation, memory, openai, telegram, discord, access,
jobs, backup; `[llama_server]` in `llama_server`, `[safety]` in `safety`, `[web]` in `web`),
`settings` (`Settings`, its sources and `load_settings`) and `options` (the `--config`/`--db`
options of the `solace` commands). Every key is documented in docs/bot.md.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.config.llama_server import LlamaServerSettings as LlamaServerSettings
    from bot.config.options import (
        config_option as config_option,
        db_option as db_option,
        settings_or_exit as settings_or_exit,
    )
    from bot.config.safety import SafetySettings as SafetySettings
    from bot.config.sections import (
        REPRESENTATIONS as REPRESENTATIONS,
        AccessSettings as AccessSettings,
        BackupSettings as BackupSettings,
        DiscordSettings as DiscordSettings,
        GenerationSettings as GenerationSettings,
        JobsSettings as JobsSettings,
        MemorySettings as MemorySettings,
        ModelSettings as ModelSettings,
        OpenAISettings as OpenAISettings,
        TelegramSettings as TelegramSettings,
        default_db_path as default_db_path,
    )
    from bot.config.settings import (
        DEFAULT_CONFIG_NAME as DEFAULT_CONFIG_NAME,
        SECRET_FIELDS as SECRET_FIELDS,
        Settings as Settings,
        load_settings as load_settings,
    )
    from bot.config.web import WebSettings as WebSettings

__getattr__, __dir__ = lazy_exports(__name__)
