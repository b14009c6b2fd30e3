"""Plumbing every Solace package shares: config files with `--set` overrides, and run files.

`configfile` (TOML files, one `--set key=value` grammar, readable validation errors, renamed
keys) and `runfiles` (atomic JSON, the git commit, timestamps). The lowest layer: it imports
nothing from Solace, so the bot, the kit and the scorers can all use it.
"""
