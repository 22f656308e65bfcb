"""Small models for decoder tests: a one-layer bidirectional model and blocksft's TinyDiffusionLM in float64,
and wrappers recording what the decoder feeds them."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 20
MASK_ID = 19
PAD_ID = 0


class TinyBidirectional(nn.Module):
    """One-layer bidirectional attention model; left padding shifts neither positions nor attention."""

    def __init__(self, vocab: int = VOCAB, dim: int = 16, max_len: int = 64, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.tok = nn.Embedding(vocab, dim)
            self.pos = nn.Embedding(max_len, dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.out = nn.Linear(dim, dim)
            self.head = nn.Linear(dim, vocab)
        with torch.no_grad():  # sharpen attention so the output depends on the prompt, not just positions
            self.qkv.weight.mul_(3.0)
            self.out.weight.mul_(3.0)
        self.double().eval()  # float64 so batched vs single-row matmuls cannot flip an argmax

    def forward(self, input_ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        h = self.tok(input_ids) + self.pos(position_ids)
        q, k, v = (t.unsqueeze(1) for t in self.qkv(h).chunk(3, dim=-1))  # [B, 1, L, d]
        key_mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L]
        h = h + self.out(F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask).squeeze(1))
        return types.SimpleNamespace(logits=3.0 * self.head(h))


class Recorder:
    """Wraps a model and records every input canvas and whether attention_mask was passed."""

    def __init__(self, model) -> None:
        self.model = model
        self.inputs: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []

    def __call__(self, x, **kwargs):
        self.inputs.append(x.clone())
        self.masks.append(kwargs.get("attention_mask", "absent"))
        return self.model(x, **kwargs)


def random_prompts(batch, length, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, MASK_ID, (batch, length), generator=g)


def tiny_lm(num_layers: int, seed: int = 0):
    """blocksft's TinyDiffusionLM in float64 with a sharpened head (well-separated argmaxes)."""
    from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM

    torch.manual_seed(seed)
    config = TinyDiffusionConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_layers=num_layers,
        num_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        mask_token_id=MASK_ID,
    )
    model = TinyDiffusionLM(config).double().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


class CacheRecorder(Recorder):
    """Recorder that also forwards the cache capability and records the cache arguments."""

    supports_prefix_cache = True

    def __init__(self, model) -> None:
        super().__init__(model)
        self.cache_calls: list[str] = []

    def __call__(self, x, **kwargs):
        self.cache_calls.append(
            "build" if kwargs.get("use_cache") else "reuse" if "past_key_values" in kwargs else "none"
        )
        return super().__call__(x, **kwargs)
