"""Research-grade evaluation: generation on test splits through the bot's own engine, the
papers' metrics, an LLM judge, toxicity scoring and HTML/Markdown reports.
"""
