"""LSTM with Luong attention over its own earlier hidden states (Luong et al. 2015).

At step t the top LSTM state h_t scores the memory m_1..m_t (dot: h·m, general: h·W_a m,
concat: v·tanh(W_a[h; m])), takes the context c_t as the softmax-weighted sum of the memory,
and predicts from the attentional hidden state h~_t = tanh(W_c [c_t; h_t]). Attention is
causal and covers at most the last ``memory`` positions, so any length can be processed.

For fill-in-the-middle the model is an encoder-decoder: an encoder LSTM reads the context
(``<pre> prefix <suf> suffix``), its states become the memory of those positions, and from the
``<mid>`` sentinel on the decoder writes the middle, attending over the encoder's states and
its own earlier ones. Which positions are context is known from the ids (before ``<mid>``),
so the same forward serves training, prefill and single steps.

State: (h, c, enc_h, enc_c, memory, phase): h, c, enc_h, enc_c (layers, B, H); memory
(B, S, H); phase (B,) 1.0 once ``<mid>`` was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqgen.errors import ConfigError
from seqgen.models.base import ModelConfig, SeqModel, State, VocabHead, check_head_ids, window_mask

SCORES = ("dot", "general", "concat")
@dataclass
class LSTMAttnConfig(ModelConfig):
    type: ClassVar[str] = "lstm-attn"
    emb_dim: int = 64
    score: str = "general"
    memory: int = 256
    encoder: bool = True
    head_ids: list[int] | None = None  # the tokens the output layer scores apart (None: all; ``VocabHead``)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.head_ids = check_head_ids(self.head_ids, self.vocab_size)
        if self.score not in SCORES:
            raise ConfigError(f"attention score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.memory < 1:
            raise ConfigError(f"memory must be at least 1, got {self.memory}")


class LSTMAttnLM(SeqModel):
    state_names = ("h", "c", "enc_h", "enc_c", "memory", "phase")
    state_batch_axes = (1, 1, 1, 1, 0, 0)

    def __init__(self, config: LSTMAttnConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.emb_dim)
        drop = c.dropout if c.layers > 1 else 0.0
        self.decoder = nn.LSTM(c.emb_dim, c.dim, c.layers, batch_first=True, dropout=drop)
        self.encoder = nn.LSTM(c.emb_dim, c.dim, c.layers, batch_first=True, dropout=drop) if c.encoder else None
        if c.score == "general":
            self.w_a = nn.Linear(c.dim, c.dim, bias=False)
        elif c.score == "concat":
            self.w_q = nn.Linear(c.dim, c.dim, bias=False)
            self.w_k = nn.Linear(c.dim, c.dim)
            self.v_a = nn.Linear(c.dim, 1, bias=False)
        self.w_c = nn.Linear(2 * c.dim, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.head = VocabHead(c.dim, c.vocab_size, c.head_ids)

    def init_state(self, batch: int, device="cpu") -> State:
        c = self.config
        z = torch.zeros(c.layers, batch, c.dim, device=device)
        return (z, z.clone(), z.clone(), z.clone(),
                torch.zeros(batch, 0, c.dim, device=device), torch.zeros(batch, device=device))

    def _scores(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """q (B, T, H), keys (B, S, H) -> (B, T, S)."""
        kind = self.config.score
        if kind == "dot":
            return q @ keys.transpose(1, 2)
        if kind == "general":
            return q @ self.w_a(keys).transpose(1, 2)
        e = torch.tanh(self.w_q(q)[:, :, None, :] + self.w_k(keys)[:, None, :, :])  # (B, T, S, H)
        return self.v_a(e).squeeze(-1)

    def forward(self, ids: torch.Tensor, state: State | None = None,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        if ids.dim() != 2:
            raise ValueError(f"Expected ids to be 2D (batch, time), got {ids.dim()}D")
        b, t = ids.shape
        if state is None:
            state = self.init_state(b, ids.device)
        h, c, eh, ec, memory, phase = state
        x = self.embed(ids)  # (B, T, E)
        dec, (h, c) = self.decoder(x, (h, c))  # (B, T, H)
        # Phase: 1 from the <mid> sentinel on (decoder writes), 0 before it (context).
        is_mid = (ids == self.config.mid_id).to(x.dtype)
        ph = torch.clamp(phase[:, None] + torch.cumsum(is_mid, dim=1), max=1.0)  # (B, T)
        if self.encoder is not None:
            enc, (eh, ec) = self.encoder(x, (eh, ec))  # (B, T, H)
            new_mem = torch.where(ph[..., None] > 0, dec, enc)  # (B, T, H)
        else:
            new_mem = dec
        s = memory.shape[1]
        keys = torch.cat((memory, new_mem), dim=1)  # (B, S+T, H)
        allowed = window_mask(t, s, self.config.memory, ids.device)  # (T, S+T)
        scores = self._scores(dec, keys).masked_fill(~allowed, float("-inf"))  # (B, T, S+T)
        context = F.softmax(scores, dim=-1) @ keys  # (B, T, H)
        att = torch.tanh(self.w_c(torch.cat((context, dec), dim=-1)))  # (B, T, H)
        logits = self.scores(self.drop(att), targets)  # (B, T, V), or the loss of targets
        keep = self.config.memory - 1
        new_state = (h, c, eh, ec, keys[:, -keep:] if keep else keys[:, :0], ph[:, -1])
        return logits, new_state
