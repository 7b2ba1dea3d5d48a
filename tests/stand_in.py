"""Download-free stand-ins for the TagGenerator: a byte-level BPE tokenizer trained on a few texts, with a
Qwen-style chat template, and a Qwen2 causal LM with random weights.

They exercise the transformers backend end to end (tests) and measure the speed of the TagGenerator's
architecture (``scripts/bench_taggers.py``) where the real weights cannot be downloaded. Random weights
write garbage, so only the pipeline and the timing mean anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The architecture of Qwen2.5-0.5B-Instruct, which the TagGenerator fine-tunes (494M parameters).
QWEN25_05B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
#: A tiny configuration of the same architecture, for fast tests.
TINY: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}
#: A ChatML template like Qwen2.5's: the default system message unless the conversation brings its own.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def stand_in_tokenizer(texts: Sequence[str], vocab_size: int = 2000) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (pad ``<|endoftext|>``, eos ``<|im_end|>``, left
    padding, the chat template above), as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )


def random_qwen2(tokenizer: Any, config: dict[str, Any], seed: int = 0) -> Any:
    """A Qwen2 causal LM with random weights (``config`` overrides, e.g. :data:`TINY` or
    :data:`QWEN25_05B`); its vocabulary covers the tokenizer's, and it stops at the tokenizer's eos."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    settings = {"vocab_size": len(tokenizer), **config}
    settings["vocab_size"] = max(settings["vocab_size"], len(tokenizer))
    model_config = Qwen2Config(
        **settings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(model_config).eval()


def save_stand_in(folder: Path, texts: Sequence[str], config: dict[str, Any] = TINY) -> Path:
    """Write a stand-in tokenizer and random-weight model to ``folder`` (a local model folder that
    ``transformers:FOLDER`` loads like the real TagGenerator); returns ``folder``."""
    tokenizer = stand_in_tokenizer(texts)
    random_qwen2(tokenizer, config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


__all__ = ["CHAT_TEMPLATE", "QWEN25_05B", "TINY", "random_qwen2", "save_stand_in", "stand_in_tokenizer"]
