"""Self-chat synthesis of ExTES-style emotional-support dialogues (`solace data synthesize`).

An OpenAI-compatible endpoint writes dialogues from a 16-strategy template and a seed example;
every answer is parsed, repaired or rejected with a counted reason, safety-screened and
de-duplicated; a human review queue decides what enters the ExTES-format output. Imports only
`dialogue`, `bot.safety`'s public names and the standard library plus `openai`/`datasketch`.
"""
