"""Solace's runtime, in layers (docs/architecture.md): the entry points `cli` and `serve`; then
`adapters/` (console, Telegram, Discord), `audit/` (moderator jobs and reports) and `ops/`
(health, backups); then `engine/`; then `safety/`, `backends/` and `memory/`; at the bottom the
shared modules `config/`, `texts`, `messages`, `secrets`, `logs`, `input_text` and `errors`.
Heavy libraries (llama_cpp, telegram, discord) are imported only where they are used.
"""
