"""GPT-style decoder: pre-norm blocks, causal self-attention with rotary positions, tied weights.

Rotary position embeddings (Su et al. 2021) make attention depend only on relative position,
so nothing is tied to a maximum length: sampling runs past the training window with a
sliding KV cache that keeps the last ``window - 1`` keys, and each new token costs one step.
Every query attends to at most ``window`` positions, in a window forward and in cached steps
alike, so both give the same logits.

State: (k, v, pos) with k, v (layers, B, heads, S, head_dim) and pos a () int64 tensor, the
absolute position of the next token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqgen.errors import ConfigError
from seqgen.models.base import ModelConfig, SeqModel, State, window_mask

@dataclass
class TransformerConfig(ModelConfig):
    type: ClassVar[str] = "transformer"
    heads: int = 4
    window: int = 256
    mlp_ratio: int = 4
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.heads < 1 or self.dim % self.heads:
            raise ConfigError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if (self.dim // self.heads) % 2:
            raise ConfigError(f"head size dim/heads must be even for rotary positions, got {self.dim // self.heads}")
        if self.window < 2:
            raise ConfigError(f"window must be at least 2, got {self.window}")


def rotary(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate pairs of channels of x (B, H, T, D) by angles of their absolute positions."""
    d = x.shape[-1]
    t = pos.to(torch.float32) + torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)  # (T,)
    inv = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (D/2,)
    ang = t[:, None] * inv[None, :]  # (T, D/2)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, H, T, D/2, 2)
    return out.flatten(-2)


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.heads, self.c = c.heads, c
        self.ln1 = nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.ln2 = nn.LayerNorm(c.dim)
        self.mlp = nn.Sequential(
            nn.Linear(c.dim, c.mlp_ratio * c.dim), nn.GELU(), nn.Linear(c.mlp_ratio * c.dim, c.dim)
        )
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, k_past, v_past, pos, mask):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.view(b, t, h, d // h).transpose(1, 2)  # (B, H, T, D)
        k = k.view(b, t, h, d // h).transpose(1, 2)
        v = v.view(b, t, h, d // h).transpose(1, 2)
        q, k = rotary(q, pos, self.c.rope_base), rotary(k, pos, self.c.rope_base)
        k_all = torch.cat((k_past, k), dim=2)  # (B, H, S+T, D)
        v_all = torch.cat((v_past, v), dim=2)
        y = F.scaled_dot_product_attention(
            q, k_all, v_all, attn_mask=mask, dropout_p=self.c.dropout if self.training else 0.0
        )  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(b, t, d)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, k_all, v_all


class TransformerLM(SeqModel):
    state_names = ("k", "v", "pos")
    state_batch_axes = (1, 1, -1)

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # weight tying
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def init_state(self, batch: int, device="cpu") -> State:
        c = self.config
        empty = torch.zeros(c.layers, batch, c.heads, 0, c.dim // c.heads, device=device)
        return empty, empty.clone(), torch.zeros((), dtype=torch.int64, device=device)

    def forward(self, ids: torch.Tensor, state: State | None = None,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        if ids.dim() != 2:
            raise ValueError(f"Expected ids to be 2D (batch, time), got {ids.dim()}D")
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        k_cache, v_cache, pos = state
        t, s = ids.shape[1], k_cache.shape[3]
        mask = window_mask(t, s, self.config.window, ids.device)  # (T, S+T)
        x = self.drop(self.embed(ids))  # (B, T, C)
        ks, vs = [], []
        keep = self.config.window - 1
        for i, block in enumerate(self.blocks):
            x, k_all, v_all = block(x, k_cache[i], v_cache[i], pos, mask)
            ks.append(k_all[:, :, -keep:])
            vs.append(v_all[:, :, -keep:])
        logits = self.scores(self.ln_f(x), targets)  # (B, T, V), or the loss of targets
        return logits, (torch.stack(ks), torch.stack(vs), pos + t)

    def reset_rows(self, state: State, reset: torch.Tensor) -> State:
        raise NotImplementedError("the transformer trains on independent windows")
