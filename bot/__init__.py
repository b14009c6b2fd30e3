"""Solace's runtime: the platform-neutral engine, per-user SQLite memory, model backends,
the safety layer, platform adapters (console, Telegram, Discord) and scheduled jobs.
Heavy libraries (llama_cpp, telegram, discord) are imported only where they are used.
"""
