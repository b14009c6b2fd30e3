"""Turns a training run into something llama.cpp runs: merge → HF safetensors → GGUF →
quantize, or an adapter-only GGUF LoRA, with tokenizer/perplexity parity checks and a model card.
"""
