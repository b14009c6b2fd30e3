"""LoRA / QLoRA fine-tuning of Solace's model on emotional-support dialogues.

Only `trainer.cli` is imported from outside; torch, transformers and peft are imported inside
the functions that use them.
"""
