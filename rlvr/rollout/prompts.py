"""Prompt rendering shared by every rollout engine: chat messages -> prompt token ids.

One function so that the HF and vLLM engines (and the trainer, which re-scores ``Rollout.prompt_ids``) see the
same tokens for the same sample: the chat template with the generation prompt, tokenized without adding special
tokens again (the template already wrote the ones it wants).
"""

from __future__ import annotations

from typing import Any, Sequence

from rlvr.tasks.base import Message


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """Chat messages -> prompt token ids (template with generation prompt; the template adds any special tokens)."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
