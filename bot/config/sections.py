"""The sections of the bot's settings: one class per area, each owning its own fields.

Every key is documented in docs/bot.md. A section is frozen and rejects unknown keys; a renamed
key keeps working for one release, with a `FutureWarning` naming the new one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.configfile import renamed_keys

REPRESENTATIONS = ("raw", "keypos", "nostopwords", "hybrid")
Snowflake = Annotated[str, Field(pattern=r"^[0-9]{1,20}$")]  # a Discord id, as a string


def default_db_path() -> Path:
    """The per-user data file: `$XDG_DATA_HOME/solace/solace.db` (~/.local/share by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "solace" / "solace.db"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSettings(_Section):
    """Which backend answers, and the local model it loads."""

    backend: Literal["auto", "llama-cpp", "llama-server", "openai", "echo"] = Field(
        "auto",
        description="auto (llama-server in `solace serve`, llama-cpp elsewhere), llama-cpp (the "
        "GGUF in the bot's process), llama-server (llama.cpp's server as a child process, "
        "parallel slots), openai (a remote server) or echo (tests).",
    )
    path: Path | None = Field(
        None, description="GGUF file for llama-cpp; empty = the embedded SmolLM2-135M-Instruct."
    )
    lora_path: Path | None = Field(None, description="A LoRA adapter GGUF to apply on top.")
    use_default_adapter: bool = Field(
        True, description="Apply Solace's shipped adapter to the embedded model when it exists."
    )
    n_ctx: int = Field(
        2048,
        ge=256,
        le=131072,
        description="Context window in tokens (llama-server: per slot, i.e. per conversation).",
    )
    n_threads: int | None = Field(None, ge=1, description="CPU threads; empty = llama.cpp's.")
    cache_mb: int = Field(
        512, ge=0, description="RAM for saved per-conversation KV states; 0 = off."
    )
    flash_attn: bool = Field(
        False,
        description="llama.cpp's flash attention, for the embedded model and llama-server alike "
        "(its F16 arithmetic changes greedy replies, so both must agree; off = llama-cpp-python's "
        "default, on = llama-server's own default on CPU).",
    )
    omp_spin_count: int = Field(
        0,
        ge=0,
        description="How long llama.cpp's OpenMP threads spin at each wait before they sleep "
        "(GOMP_SPINCOUNT; both backends). 0 = PASSIVE, sleep at once: safe on a shared CPU. "
        "10000 is ~3x faster per token when the model has its cores to itself and ~10x slower "
        "when another busy process wants one. Your own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.",
    )


class GenerationSettings(_Section):
    """Sampling defaults (the paper's Table 3) and how the reply is released while streaming."""

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Top-k sampling (0 = off).")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Reply length budget in tokens.")
    seed: int | None = Field(None, description="Fixed sampling seed; empty = random.")
    holdback_chars: int = Field(
        0,
        ge=0,
        le=2000,
        description="Extra characters held back while streaming, on top of what the reply "
        "guard holds back itself (text a guard rule could still be matching, and the last "
        "word); 0 = none: the guard's own hold-back keeps every phrase whole (tested).",
    )


class MemorySettings(_Section):
    """The SQLite store and how history is fitted into the context."""

    db_path: Path = Field(default_factory=default_db_path, description="SQLite database file.")
    context_representation: Literal["raw", "keypos", "nostopwords", "hybrid"] = Field(
        "hybrid",
        description="How older turns enter the context (see dialogue.context); the trainer's "
        "and the evaluation's key of the same name. Was `representation`.",
    )
    raw_recent: int = Field(4, ge=0, description="Newest turns kept raw in the hybrid form.")
    compress_in_blocks: bool = Field(
        True,
        description="Hybrid: compress older turns 2 x raw_recent at a time, so the prompt prefix "
        "(and the model's KV cache) stays the same for several turns.",
    )
    max_history_turns: int = Field(
        200, ge=0, description="At most this many stored turns are considered for the context."
    )
    retention_days: int = Field(90, ge=1, description="Turns and events older than this go.")
    max_message_chars: int = Field(
        4000,
        ge=1,
        description="Longer messages are stored truncated to this length (with a marker) and "
        "not sent to the model; the whole message is still screened.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return renamed_keys(data, {"representation": "context_representation"}, "memory")


class OpenAISettings(_Section):
    """An OpenAI-compatible chat endpoint (vLLM, llama.cpp server, ...). Key: environment only."""

    base_url: str = Field("http://127.0.0.1:8080/v1", description="Endpoint base URL.")
    model: str = Field("solace", description="Model name sent with each request.")
    timeout_seconds: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries with exponential backoff.")
    context_tokens: int = Field(4096, ge=256, description="The served model's context window.")
    send_top_k: bool = Field(
        True, description="Send top_k (vLLM and llama.cpp accept it; api.openai.com does not)."
    )


class TelegramSettings(_Section):
    """Telegram adapter (owned by the adapters area). Token: SOLACE_TELEGRAM_TOKEN."""

    enabled: bool = Field(False, description="Run the Telegram adapter in `solace serve`.")
    edit_interval_seconds: float = Field(
        1.0, ge=0.05, le=60, description="At most one edit of a streamed reply per interval."
    )
    typing_interval_seconds: float = Field(
        4.0, gt=0, le=5, description="Repeat 'typing…' this often (Telegram shows it ~5 s)."
    )
    max_message_chars: int = Field(
        4096, ge=64, le=4096, description="Split replies at this length (UTF-16 units)."
    )
    concurrent_updates: int = Field(
        64, ge=1, description="Updates handled at once (one user's messages stay in order)."
    )
    poll_timeout_seconds: int = Field(30, ge=0, le=50, description="getUpdates long-poll timeout.")
    flood_retries: int = Field(
        5, ge=0, le=20, description="Retries of a call answered 429, each after retry_after."
    )
    overall_max_rate: float = Field(
        30, ge=0, description="Bot-wide messages per second (Telegram's limit); 0 = off."
    )
    group_max_rate: float = Field(
        20, ge=0, description="Messages per minute into one group (Telegram's limit); 0 = off."
    )
    groups: bool = Field(
        True, description="Answer in groups when mentioned or replied to; off = private only."
    )
    base_url: str = Field(
        "https://api.telegram.org/bot", description="Bot API URL (a self-hosted Bot API server)."
    )
    base_file_url: str = Field("https://api.telegram.org/file/bot", description="Bot API file URL.")
    # --- webhook mode (docs/platforms.md, "Webhook mode"); secret: SOLACE_TELEGRAM_WEBHOOK_SECRET
    mode: Literal["polling", "webhook"] = Field(
        "polling",
        description="polling (getUpdates) or webhook (PTB's webhook server behind your HTTPS "
        "reverse proxy; setWebhook at start, deleteWebhook at stop).",
    )
    webhook_url: str | None = Field(
        None,
        description="Public HTTPS URL Telegram posts updates to, e.g. "
        "https://bot.example.org/telegram; required in webhook mode.",
    )
    webhook_listen: str = Field(
        "127.0.0.1", description="Address the webhook server binds (the proxy forwards to it)."
    )
    webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server binds.")
    webhook_path: str = Field(
        "/telegram", description="Path the webhook server answers (the proxy forwards it)."
    )
    webhook_max_connections: int = Field(
        40, ge=1, le=100, description="Simultaneous deliveries Telegram may open (setWebhook)."
    )
    drop_pending_updates: bool = Field(
        False,
        description="Drop the updates Telegram queued while the bot was down (at start); off = "
        "answer them.",
    )
    webhook_delete_on_stop: bool = Field(
        True,
        description="deleteWebhook when `solace serve` stops (Telegram keeps new updates until "
        "the next start); turn off when several processes share the URL.",
    )
    webhook_order_wait_seconds: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="Wait at most this long for another process to finish a person's earlier "
        "update before answering their next one.",
    )

    @model_validator(mode="after")
    def _webhook_url_needed(self) -> TelegramSettings:
        if self.mode == "webhook":
            if not self.webhook_url:
                raise ValueError("telegram.mode = 'webhook' needs telegram.webhook_url")
            official = self.base_url.startswith("https://api.telegram.org/")
            if official and not self.webhook_url.startswith("https://"):
                raise ValueError("telegram.webhook_url must be https:// (Telegram's rule)")
        if not self.webhook_path.startswith("/"):
            raise ValueError("telegram.webhook_path must start with '/'")
        return self


class DiscordSettings(_Section):
    """Discord adapter (owned by the adapters area). Token: SOLACE_DISCORD_TOKEN."""

    enabled: bool = Field(False, description="Run the Discord adapter in `solace serve`.")
    edit_interval_seconds: float = Field(
        1.2, ge=0.05, le=60, description="At most one edit per interval (Discord: 5 per 5 s)."
    )
    typing_interval_seconds: float = Field(
        8.0, gt=0, le=10, description="Repeat 'typing…' this often (Discord shows it ~10 s)."
    )
    max_message_chars: int = Field(
        2000, ge=64, le=2000, description="Split replies at this length."
    )
    guilds: bool = Field(
        True, description="Answer in servers when mentioned or replied to; off = DMs only."
    )
    sharded: bool = Field(False, description="Use discord.AutoShardedClient (large bots).")
    shard_count: int | None = Field(
        None, ge=1, description="Shards for the sharded client; empty = Discord's suggestion."
    )
    rest_base_url: str | None = Field(
        None,
        description="REST API base, e.g. a rate-limit proxy such as nirn-proxy; "
        "empty = https://discord.com/api/v10.",
    )
    # --- application (slash) commands: bot/adapters/discord_slash.py, discord_sync.py ---
    sync_commands: bool = Field(
        False,
        description="At start-up, compare the registered slash commands with this version's "
        "and overwrite them only if they differ (else run `solace discord sync`).",
    )
    command_guild_ids: tuple[Snowflake, ...] = Field(
        (),
        description="Register the slash commands in these servers only (instant, for testing); "
        "empty = globally.",
    )


class AccessSettings(_Section):
    """Who may talk to the bot (owned by the adapters area).

    Ids are the platform's user ids as text, optionally qualified: "123" matches that id on any
    platform, "telegram:123" / "discord:123" only there.
    """

    enabled: bool = Field(
        False, description="Apply allow_user_ids; off = anyone not blocked may write."
    )
    allow_user_ids: tuple[str, ...] = Field(
        (), description="With enabled = true, only these users get answers."
    )
    block_user_ids: tuple[str, ...] = Field(
        (),
        description="Ignored (no reply, nothing stored), enabled or not - except /forget and "
        "/export in a private chat, which everyone with stored data can always use.",
    )
    admin_user_ids: tuple[str, ...] = Field(
        (), description="May use operator commands such as /stats (counts only)."
    )
    messages_per_minute: int = Field(12, ge=0, description="Per-user message limit; 0 = unlimited.")
    commands_per_minute: int = Field(
        10, ge=0, description="Per-user limit on commands other than /forget; 0 = unlimited."
    )
    exports_per_hour: int = Field(
        4, ge=0, description="Per-user limit on /export files (each is a full copy); 0 = unlimited."
    )


class JobsSettings(_Section):
    """Scheduled jobs: retention purge, audits, reports (owned by the jobs area; docs/audits.md).

    Each `*_cron` is a five-field crontab line ("min hour day month weekday") in `timezone`;
    an empty string disables that job.
    """

    enabled: bool = Field(True, description="Run scheduled jobs inside `solace serve`.")
    timezone: str = Field("UTC", description="Time zone of the cron schedules (IANA name).")
    log_conversations_cron: str = Field(
        "*/15 * * * *", description="Snapshot reviewable conversations into the audit store."
    )
    judge_cron: str = Field("30 2 * * *", description="LLM-judge a sample of new conversations.")
    toxicity_cron: str = Field("*/30 * * * *", description="Score new turns for toxicity.")
    retention_cron: str = Field("15 3 * * *", description="Purge data past its retention.")
    report_daily_cron: str = Field("0 6 * * *", description="Write the daily moderator report.")
    report_weekly_cron: str = Field("5 6 * * 1", description="Write the weekly moderator report.")
    misfire_grace_seconds: int = Field(
        3600, ge=1, description="A run missed by less than this still runs (once, coalesced)."
    )
    retry_max: int = Field(3, ge=0, le=10, description="Retries of a failed run, with backoff.")
    retry_base_seconds: float = Field(
        60.0, gt=0, description="First retry delay; doubles per failure (capped at 1 hour)."
    )
    worker_process: bool = Field(
        True,
        description="Run the jobs' CPU work (redaction, scoring, charts) in a separate process "
        "so it never competes with chats for the bot's interpreter lock.",
    )
    lease_seconds: int = Field(
        3600, ge=60, description="A run holds its job's lock at most this long (crash recovery)."
    )
    overlap_seconds: float = Field(
        300.0, ge=0, description="Cursors re-read this much before their mark (late commits)."
    )
    audit_retention_days: int | None = Field(
        None, ge=1, description="Audit rows kept this long; empty (and at most) memory's days."
    )
    judge_conversations: int = Field(
        20, ge=0, description="Conversations judged per run (0 = none). Was `judge_sample`."
    )
    judge_strata: int = Field(3, ge=1, le=10, description="Length strata for the sample.")
    judge_base_url: str | None = Field(
        None, description="Judge endpoint (OpenAI-compatible); empty = api.openai.com."
    )
    judge_model: str = Field("gpt-4o", description="Judge model name (stored with each score).")
    judge_api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the judge's API key."
    )
    judge_samples: int = Field(1, ge=1, le=20, description="Judgements per conversation.")
    judge_budget_usd: float = Field(1.0, ge=0, description="Cost cap of one judge run (USD).")
    judge_max_turns: int = Field(
        40, ge=2, description="Only the newest turns of a long conversation are judged."
    )
    toxicity_scorer: Literal["lexicon", "detoxify", "perspective"] = Field(
        "lexicon",
        description="lexicon/detoxify run here and score every new turn; perspective is remote "
        "and scores only reviewable (audit-store, redacted) turns.",
    )
    toxicity_lexicon_path: Path | None = Field(None, description="Own lexicon JSON.")
    toxicity_detoxify_checkpoint: Path | None = Field(None, description="Local Detoxify .ckpt.")
    toxicity_threshold: float = Field(
        0.5, gt=0, le=1, description="A score above this raises a moderator event."
    )
    report_dir: Path | None = Field(
        None, description="Where reports go; empty = a `reports` folder beside the database."
    )
    report_max_flagged: int = Field(50, ge=0, description="Flagged conversations listed.")
    report_excerpt_turns: int = Field(6, ge=1, description="Turns shown per flagged excerpt.")
    report_telegram_chat_id: str | None = Field(
        None, description="Moderator Telegram chat for the report (uses SOLACE_TELEGRAM_TOKEN)."
    )
    report_discord_channel_id: str | None = Field(
        None, description="Moderator Discord channel for the report (SOLACE_DISCORD_TOKEN)."
    )
    report_post_html: bool = Field(
        True, description="Attach the HTML report when posting (else the summary only)."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return renamed_keys(data, {"judge_sample": "judge_conversations"}, "jobs")


class BackupSettings(_Section):
    """`solace backup`: where copies of the database go and how many stay (owned by deploy)."""

    dir: Path | None = Field(
        None, description="Backup folder; empty = a `backups` folder beside the database."
    )
    keep: int = Field(14, ge=0, description="Newest backups kept; older ones go (0 = keep all).")
