"""The TagGenerator (or any causal LM) through Hugging Face ``transformers``: chat template, greedy batched
generation with left padding, bounded new tokens.

Needs the ``transformers`` extra and torch (``pip install torch==2.13.0`` gives the CPU build). Nothing is
imported or loaded until the first query is tagged, so a saved router using this backend loads without
them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tagrouter.tagging.backends.chat import BackendError, chat_messages

#: The paper's tagger on the Hugging Face Hub.
TAGGENERATOR_ID = "itpossible/TagGenerator"
INSTALL_HINT = "pip install torch==2.13.0 'tagrouter[transformers]' (or a CUDA build of torch for a GPU)"


@dataclass
class TransformersGenerator:
    """Generates tag answers with a causal LM from a local folder or a Hugging Face id.

    ``device``: ``auto`` (CUDA, then Apple MPS, then CPU) or a torch device string; ``dtype``: ``auto``
    (bfloat16 on a GPU that supports it, float16 on other GPUs, float32 on the CPU) or a torch dtype name.
    Queries are sorted by length and generated ``batch_size`` at a time, greedily, at most
    ``max_new_tokens`` new tokens each; a query longer than ``max_query_tokens`` tokens is cut.
    ``min_new_tokens`` forces a fixed answer length (speed measurement only).
    """

    model: str = TAGGENERATOR_ID
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    max_new_tokens: int = 64
    max_query_tokens: int = 512
    prompt: str = "taggenerator"
    min_new_tokens: int = 0
    _loaded: tuple[Any, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        chat_messages("", self.prompt)  # validates the prompt style
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_query_tokens < 1:
            raise ValueError("batch_size, max_new_tokens and max_query_tokens must be at least 1")

    @classmethod
    def from_loaded(cls, tokenizer: Any, model: Any, **settings: Any) -> TransformersGenerator:
        """A generator over a tokenizer and model already in memory (``model`` names nothing to load)."""
        generator = cls(model=getattr(model, "name_or_path", "") or "in-memory", **settings)
        generator._loaded = (_left_padded(tokenizer, generator.model), model.eval())
        return generator

    def generate(self, queries: Sequence[str]) -> list[str]:
        tokenizer, model = self.load()
        import torch

        prompts = [self.prompt_text(q) for q in queries]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        config = self._generation_config(model, tokenizer)
        answers: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            encoded = tokenizer(
                [prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            with torch.inference_mode():
                output = model.generate(**encoded, generation_config=config)
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for i, text in zip(
                chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
            ):
                answers[i] = text
        return answers

    def prompt_text(self, query: str) -> str:
        """The full model input for ``query``: the chat template applied to the tagging prompt."""
        tokenizer, _ = self.load()
        ids = tokenizer(query, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_query_tokens:
            query = tokenizer.decode(ids[: self.max_query_tokens])
        messages = chat_messages(query, self.prompt)
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages)

    def load(self) -> tuple[Any, Any]:
        """The tokenizer and the model, loaded on first use (left padding, eval mode, on the device)."""
        if self._loaded is None:
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:
                raise BackendError(
                    f"the transformers tagger needs torch and transformers ({exc}): {INSTALL_HINT}"
                ) from None
            device = self._device(torch)
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model)
                model = AutoModelForCausalLM.from_pretrained(self.model, dtype=self._dtype(torch, device))
            except (OSError, ValueError) as exc:
                raise BackendError(
                    f"cannot load the tagging model {self.model!r} ({exc}); give a local model folder or a "
                    "Hugging Face id that is cached or downloadable"
                ) from None
            self._loaded = (_left_padded(tokenizer, self.model), model.to(device).eval())
        return self._loaded

    def _device(self, torch: Any) -> str:
        if self.device != "auto":
            return self.device
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def _dtype(self, torch: Any, device: str) -> Any:
        if self.dtype != "auto":
            dtype = getattr(torch, self.dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise BackendError(f"unknown dtype {self.dtype!r}; use auto, float32, bfloat16 or float16")
            return dtype
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32

    def _generation_config(self, model: Any, tokenizer: Any) -> Any:
        """The model's own generation settings, made greedy and bounded."""
        config = copy.deepcopy(model.generation_config)
        config.do_sample = False
        config.temperature = config.top_p = config.top_k = None
        config.num_beams = 1
        config.max_new_tokens = self.max_new_tokens
        config.min_new_tokens = self.min_new_tokens or None
        config.max_length = None
        config.pad_token_id = tokenizer.pad_token_id
        if config.eos_token_id is None:
            config.eos_token_id = tokenizer.eos_token_id
        return config


def _left_padded(tokenizer: Any, name: str) -> Any:
    """``tokenizer`` set to pad on the left (generation continues on the right), with a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise BackendError(f"the tokenizer of {name!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


__all__ = ["TAGGENERATOR_ID", "TransformersGenerator"]
