"""Scorers shared by the bot's audit jobs and the evaluation suite, below both.

`judge` (the LLM judge client: cache, budget, concurrency) with its rubric and answer parsing in
`judge_prompts`; `toxicity` (lexicon, Detoxify and Perspective scorers); `config` (their
settings). Imports nothing from `bot` or `evaluation`; heavy libraries load inside functions.
"""
