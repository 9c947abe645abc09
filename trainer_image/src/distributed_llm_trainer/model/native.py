"""Native decoder-only transformer: gpt2 and llama families from the same blocks (see layers.py)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from distributed_llm_trainer.model.generation import select_next
from distributed_llm_trainer.model.layers import Block, KVCache, RMSNorm, make_norm, rope_cos_sin
from distributed_llm_trainer.model.loss import causal_lm_loss
from distributed_llm_trainer.model.registry import ModelArgs


def padding_mask(attention_mask: Tensor | None, T: int, start: int = 0) -> Tensor | None:
    """Causal mask combined with a (B, S) key padding mask -> (B, 1, T, S) bool, or None when not needed.

    Right padding never changes the outputs at real tokens of a causal model, so only a mask with a real token
    after a padded one (left or inner padding) is applied; it then costs the fused attention kernels.
    """
    if attention_mask is None:
        return None
    am = attention_mask.bool()  # (B, S)
    if not bool((am[:, 1:] & ~am[:, :-1]).any()):
        return None
    S = am.shape[1]
    mask = torch.ones(T, S, dtype=torch.bool, device=am.device).tril(diagonal=S - T)  # (T, S)
    mask = mask[None] & am[:, None, :]  # (B, T, S)
    idx = torch.arange(T, device=am.device)
    mask[:, idx, S - T + idx] = True  # a padded query sees itself, so no row is empty (no NaN)
    return mask[:, None]  # (B, 1, T, S)


class NativeTransformer(nn.Module):
    """GPT-2 (learned positions, LayerNorm, GELU) or Llama (RoPE, RMSNorm, SwiGLU, GQA) decoder."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        D = args.hidden_size
        self.wte = nn.Embedding(args.vocab_size, D)
        self.wpe = nn.Embedding(args.max_position_embeddings, D) if args.family == "gpt2" else None
        self.drop = nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(Block(args, i) for i in range(args.num_layers))
        self.norm_f = make_norm(args)
        self.lm_head = nn.Linear(D, args.vocab_size, bias=False)
        self.init_weights()

    def tie_weights(self) -> None:
        """Share the embedding with the output head (again: ``to_empty`` after meta-device init unties them)."""
        if self.args.tie_embeddings and self.lm_head.weight is not self.wte.weight:
            self.lm_head.weight = self.wte.weight

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2/Llama init: N(0, 0.02); residual output projections N(0, 0.02/sqrt(2L)); zero biases.

        Re-ties the embeddings first, so ``with torch.device("meta"): build_model(...)``, then
        ``model.to_empty(device=...)`` and ``model.init_weights()`` gives a fully initialized model.
        """
        self.tie_weights()
        std = 0.02
        proj_std = std / math.sqrt(2 * self.args.num_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, proj_std if name.endswith(".proj") else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):
                module.reset_parameters()

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """Final-norm hidden states (B, T, D) for ``input_ids`` (B, T) placed after ``cache.pos`` cached tokens."""
        B, T = input_ids.shape
        start = cache.pos if cache is not None else 0
        args = self.args
        if self.wpe is not None and start + T > args.max_position_embeddings:
            raise ValueError(f"sequence of {start + T} tokens exceeds {args.max_position_embeddings} positions")
        pos = torch.arange(start, start + T, device=input_ids.device)  # (T,)
        x = self.wte(input_ids)  # (B, T, D)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        x = self.drop(x)
        rope = rope_cos_sin(pos, args.head_dim, args.rope_theta) if args.family == "llama" else None
        mask = padding_mask(attention_mask, T, start)
        ckpt = args.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if ckpt:
                x = checkpoint(block, x, rope, cache, mask, use_reentrant=False)
            else:
                x = block(x, rope, cache, mask)
        if cache is not None:
            cache.pos += T
        return self.norm_f(x)

    def forward(self, input_ids: Tensor, targets: Tensor | None = None, attention_mask: Tensor | None = None) -> Tensor:
        """With ``targets`` (B, T): scalar mean CE over targets != -100; without: logits (B, T, V)."""
        h = self.hidden_states(input_ids, attention_mask)  # (B, T, D)
        if targets is None:
            return self.lm_head(h)  # (B, T, V)
        return causal_lm_loss(h, self.lm_head.weight, targets, self.args.loss_chunk_size)

    def num_parameters(self, exclude_position_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())  # shared (tied) tensors counted once
        if exclude_position_embeddings and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N + 12·L·H·Q·T (N without position embeddings)."""
        a = self.args
        return 6.0 * self.num_parameters(True) + 12.0 * a.num_layers * a.num_attention_heads * a.head_dim * seq_len

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
    ) -> Tensor:
        """Prompt (B, T0) + up to ``max_new_tokens`` tokens (B, T0 + n), decoded with a KV cache.

        Rows that produced ``eos_token_id`` are padded with it; decoding stops once all rows have. A gpt2 model
        whose window fills up keeps going by re-reading the most recent half window into a fresh cache.
        """
        was_training = self.training
        self.eval()
        try:
            return self._generate(input_ids, max_new_tokens, temperature, top_k, top_p, eos_token_id)
        finally:
            self.train(was_training)

    def _generate(
        self, ids: Tensor, max_new: int, temperature: float, top_k: int | None, top_p: float | None, eos: int | None
    ) -> Tensor:
        B, T0 = ids.shape
        window = self.args.max_position_embeddings if self.wpe is not None else T0 + max_new
        cache = None
        pending = ids[:, -window:] if self.wpe is not None else ids  # tokens not yet in the cache
        done = torch.zeros(B, dtype=torch.bool, device=ids.device)
        for _ in range(max_new):
            if cache is None or cache.pos + pending.shape[1] > window:
                context = ids[:, -max(1, window // 2) :] if cache is not None else pending
                cache = KVCache(self.args.num_layers, window)
                pending = context
            logits = self.lm_head(self.hidden_states(pending, cache=cache)[:, -1])  # (B, V)
            nxt = select_next(logits, temperature, top_k, top_p)  # (B,)
            if eos is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
                done = done | (nxt == eos)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            pending = nxt[:, None]  # (B, 1)
            if eos is not None and bool(done.all()):
                break
        return ids
