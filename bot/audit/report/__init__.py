"""The moderator report: `build` (collect the period's counts, write JSON and HTML), `flagged`
(the flagged conversations, redacted), `render` (the HTML page and its charts) and `post` (to a
moderator Telegram chat or Discord channel)."""
