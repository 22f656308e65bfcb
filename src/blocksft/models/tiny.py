"""A small bidirectional transformer for masked diffusion, built from a config (no download).

Reads top to bottom: token embeddings -> pre-LN encoder blocks with full (non-causal) attention and
rotary position embeddings (RoPE, as LLaDA) -> final LayerNorm -> linear LM head. It is a Hugging Face
``PreTrainedModel``, so
``save_pretrained`` / ``from_pretrained`` work, and ``model(x).logits`` behaves like LLaDA's
``model(x)``. ``encode`` and ``project`` are split so that training can apply the LM head only at
loss-bearing positions.

Left padding: with an ``attention_mask`` (1 = real token), padded keys are ignored and position ids
count real tokens only, so a left-padded prompt sees exactly what the unpadded prompt sees. A
per-example ``attention_mask`` [B, L, L] (True = query i may attend key j) restricts attention further,
e.g. block-causal training and decoding (``blocksft.masking.block_causal_attention``).

Key/value cache (for prefix-cached decoding, ``blocksft.evaluation.decoding`` with ``prefix_cache=True``):
``model(x, attention_mask=m, use_cache=True)`` also returns ``past_key_values``, one ``(key, value)``
pair [B, heads, L, head_dim] per layer (Hugging Face's legacy tuple layout; keys already rotated, so
they carry their positions). ``model(suffix, attention_mask=m_all, past_key_values=prefix_kv)`` then
runs only the ``suffix`` tokens, which attend to the cached prefix keys/values and to each other;
``m_all`` covers prefix + suffix, and the suffix's positions continue the prefix's real-token count.
The model is bidirectional, so a cached prefix is exact only while the tokens after it do not change
(the prefix's own states depend on them); freezing it across decoding steps is an approximation that
the decoder, not the model, chooses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

KeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: (key, value) [B, heads, L, head_dim]


class TinyDiffusionConfig(PretrainedConfig):
    model_type = "blocksft_tiny"

    def __init__(
        self,
        vocab_size: int = 128,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        intermediate_size: int = 512,
        max_position_embeddings: int = 512,
        rope_theta: float = 10000.0,
        dropout: float = 0.0,
        mask_token_id: int | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | None = None,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.dropout = dropout
        self.mask_token_id = mask_token_id
        # The LM head is its own matrix; transformers 4.x would tie it to the embedding by default.
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(pad_token_id=pad_token_id, eos_token_id=eos_token_id, **kwargs)


@dataclass
class DiffusionLMOutput:
    """``logits`` [B, L, V]; ``past_key_values`` (prefix + these tokens) when ``use_cache=True``.

    A plain dataclass we own, not a transformers ``ModelOutput``: transformers 5.x renames the
    ``past_key_values`` keyword of every ``ModelOutput`` to ``cache`` (5.24 does), and the prefix-cache
    protocol between this model and ``blocksft.evaluation.decoding`` must not change with a dependency's
    release. Attribute access (``.logits``, ``.past_key_values``) is all the decoder and module use.
    """

    logits: torch.Tensor | None = None
    past_key_values: KeyValues | None = None


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [B, 1, L, head_dim] for integer positions [B, L] (rotate-half convention)."""
    inverse_frequency = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inverse_frequency  # [B, L, head_dim / 2]
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-second, first], dim=-1) * sin).to(x.dtype)


class EncoderBlock(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)); attention is bidirectional."""

    def __init__(self, config: TinyDiffusionConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_heads:
            raise ValueError(
                f"model.hidden_size={config.hidden_size} must be divisible by model.num_heads={config.num_heads}"
            )
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.attn_norm = nn.LayerNorm(config.hidden_size)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.attn_out = nn.Linear(config.hidden_size, config.hidden_size)
        self.mlp_norm = nn.LayerNorm(config.hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(approximate="tanh"),
            nn.Linear(config.intermediate_size, config.hidden_size),
            nn.Dropout(config.dropout),
        )

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` [B, L, H] -> (new ``x``, (key, value) of past + these positions). ``past`` keys and
        values (already rotated) are prepended, and ``key_mask`` covers past + current keys."""
        batch, length, width = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.attn_out(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.mlp_norm(x)), (k, v)


class TinyDiffusionLM(PreTrainedModel):
    """Bidirectional masked-diffusion LM.

    ``encode(input_ids [B, L], attention_mask [B, L] | [B, L, L] | None) -> hidden [B, L, H]``;
    ``project(hidden [..., H]) -> logits [..., V]``; ``forward`` = project(encode(...)). Both accept
    ``past_key_values`` / ``use_cache`` (see the module docstring).
    """

    config_class = TinyDiffusionConfig
    base_model_prefix = "tiny"
    _supports_sdpa = True
    supports_prefix_cache = True  # read by blocksft.evaluation.decoding (prefix_cache=True)
    supports_attention_mask_2d = (
        True  # a per-example [B, L, L] mask (blocksft.evaluation.decoding: attention=block_causal)
    )

    def __init__(self, config: TinyDiffusionConfig) -> None:
        super().__init__(config)
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def set_input_embeddings(self, embedding: nn.Embedding) -> None:
        self.token_embedding = embedding

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, head: nn.Linear) -> None:
        self.lm_head = head

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: KeyValues | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, KeyValues]:
        """Hidden states [B, L, H] of ``input_ids`` [B, L]; with ``use_cache``, also the per-layer
        (key, value) of past + these positions. ``attention_mask`` is a key mask [B, L] (1 = real token)
        or a per-example mask [B, L, L] (True = query i may attend key j; padding = keys nobody attends,
        including themselves: positions count the tokens whose diagonal is True). With ``past_key_values``
        (P cached positions), ``attention_mask`` is a key mask [B, P + L] and positions continue after the
        past's real tokens."""
        length = input_ids.shape[1]
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if past_length + length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {past_length + length} exceeds "
                f"model.max_position_embeddings={self.config.max_position_embeddings}"
            )
        if attention_mask is None:
            positions = torch.arange(past_length, past_length + length, device=input_ids.device).expand_as(input_ids)
            key_mask = None
        elif attention_mask.dim() == 3:  # per-example [B, L, L]: query i may attend key j
            if past_key_values is not None or attention_mask.shape[1:] != (length, length):
                raise ValueError(
                    f"a per-example attention_mask must be [B, {length}, {length}] without past_key_values; "
                    f"got {tuple(attention_mask.shape)} with {past_length} past positions"
                )
            allowed = attention_mask.bool()
            real = allowed.diagonal(dim1=1, dim2=2)  # a real token may attend to itself; padding may not
            positions = (real.long().cumsum(-1) - 1).clamp_min(0)
            key_mask = allowed[:, None]
        else:
            if attention_mask.shape[1] != past_length + length:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[1]} positions; expected past {past_length} + {length}"
                )
            real = attention_mask.bool()
            positions = (real.long().cumsum(-1) - 1).clamp_min(0)[:, past_length:]
            key_mask = real[:, None, None, :]
        rotary = rotary_tables(positions, self.config.hidden_size // self.config.num_heads, self.config.rope_theta)
        x = self.embedding_dropout(self.token_embedding(input_ids))
        cache = []
        for layer, block in enumerate(self.blocks):
            x, key_value = block(x, rotary, key_mask, None if past_key_values is None else past_key_values[layer])
            if use_cache:
                cache.append(key_value)
        hidden = self.final_norm(x)
        return (hidden, tuple(cache)) if use_cache else hidden

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: KeyValues | None = None,
        use_cache: bool = False,
        **_: object,
    ) -> DiffusionLMOutput:
        if not use_cache:
            return DiffusionLMOutput(logits=self.project(self.encode(input_ids, attention_mask, past_key_values)))
        hidden, cache = self.encode(input_ids, attention_mask, past_key_values, use_cache=True)
        return DiffusionLMOutput(logits=self.project(hidden), past_key_values=cache)
