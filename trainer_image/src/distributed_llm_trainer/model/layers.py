"""Building blocks shared by both native families: norms, RoPE, fused-QKV attention, MLPs, the block, a KV cache.

Shapes: B batch, T query tokens, S key tokens (T plus cached ones), D hidden, H query heads, K key/value heads,
Q head dim, I MLP width.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from distributed_llm_trainer.model.registry import ModelArgs

Rope = tuple[Tensor, Tensor]  # (cos, sin), each (T, Q) fp32

SDPA_BACKENDS = {  # model.attention_backend -> the one kernel SDPA may use ("auto": PyTorch's own order)
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
# KV-cache decoding on CUDA: kernels without a per-shape set-up cost (not cuDNN); PyTorch picks among them.
DECODE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class RMSNorm(nn.Module):
    """Llama RMSNorm: normalize in fp32, cast back, then scale (as transformers does)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


def make_norm(args: ModelArgs) -> nn.Module:
    if args.family == "gpt2":
        return nn.LayerNorm(args.hidden_size, eps=args.norm_eps, bias=args.bias)
    return RMSNorm(args.hidden_size, args.norm_eps)


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> Rope:
    """cos/sin tables for ``positions`` (T,) in fp32, the rotate-half layout used by transformers' Llama."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim
    inv_freq = 1.0 / (theta**exponent)  # (Q/2,)
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, Q/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, Q)
    return emb.cos(), emb.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, heads, T, Q) by the position angles."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)  # (B, heads, T, Q/2) each
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class KVCache:
    """Keys/values for incremental decoding; ``pos`` counts the tokens already stored.

    Buffers are allocated at the first update with the keys' own dtype/device (bf16 under autocast or FSDP mixed
    precision, fp32 otherwise), so the cache always matches what attention computes.
    """

    def __init__(self, num_layers: int, max_len: int) -> None:
        self.k: list[Tensor | None] = [None] * num_layers
        self.v: list[Tensor | None] = [None] * num_layers
        self.pos = 0
        self.max_len = max_len

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, K, T, Q) after the cached tokens; return all keys/values so far (B, K, S, Q)."""
        ck, cv = self.k[layer], self.v[layer]
        if ck is None or cv is None:
            B, K, _, Q = k.shape
            ck = self.k[layer] = k.new_zeros(B, K, self.max_len, Q)  # (B, K, S_max, Q)
            cv = self.v[layer] = v.new_zeros(B, K, self.max_len, Q)
        end = self.pos + k.shape[2]
        ck[:, :, self.pos : end] = k
        cv[:, :, self.pos : end] = v
        return ck[:, :, :end], cv[:, :, :end]


class Attention(nn.Module):
    """Causal self-attention with one fused QKV projection, optional RoPE and grouped-query heads."""

    def __init__(self, args: ModelArgs, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        self.dropout = args.dropout
        self.sdpa_backend = SDPA_BACKENDS.get(args.attention_backend)  # None: PyTorch picks
        qkv_out = (self.n_head + 2 * self.n_kv) * self.head_dim
        self.qkv = nn.Linear(args.hidden_size, qkv_out, bias=args.bias)  # rows: [q (H*Q) | k (K*Q) | v (K*Q)]
        self.proj = nn.Linear(self.n_head * self.head_dim, args.hidden_size, bias=args.bias)
        self.resid_drop = nn.Dropout(args.dropout)

    def forward(self, x: Tensor, rope: Rope | None, cache: KVCache | None, mask: Tensor | None) -> Tensor:
        B, T, _ = x.shape
        H, K, Q = self.n_head, self.n_kv, self.head_dim
        q, k, v = self.qkv(x).split([H * Q, K * Q, K * Q], dim=-1)
        q = q.view(B, T, H, Q).transpose(1, 2)  # (B, H, T, Q)
        k = k.view(B, T, K, Q).transpose(1, 2)  # (B, K, T, Q)
        v = v.view(B, T, K, Q).transpose(1, 2)  # (B, K, T, Q)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, K, S, Q)
        S = k.shape[2]
        is_causal = False
        if mask is None:
            if S == T:
                is_causal = True
            elif T > 1:  # a chunk after cached tokens: causal mask aligned to the end
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        gqa = {}
        if K != H:
            flash_ok = self.sdpa_backend in (None, SDPBackend.FLASH_ATTENTION) or cache is not None
            if x.is_cuda and mask is None and flash_ok:
                gqa = {"enable_gqa": True}  # the flash kernel reads shared heads directly (cuDNN, efficient: not)
            else:
                k = k.repeat_interleave(H // K, dim=1)  # (B, H, S, Q)
                v = v.repeat_interleave(H // K, dim=1)
        dropout_p = self.dropout if self.training else 0.0
        if cache is not None and x.is_cuda:
            # Decoding: the key length grows by one each call, and cuDNN builds an execution plan for every new
            # shape (~0.1-0.5 s each, torch 2.11 picks it first on Hopper): a 200-token sample paid seconds.
            kernels: SDPBackend | list[SDPBackend] | None = DECODE_BACKENDS
        elif mask is None:  # a forced kernel; masked calls (padding) let PyTorch pick among those that take masks
            kernels = self.sdpa_backend
        else:
            kernels = None
        with sdpa_kernel(kernels) if kernels is not None else nullcontext():  # traced by torch.compile, no break
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, **gqa)
        # y: (B, H, T, Q)
        y = y.transpose(1, 2).reshape(B, T, H * Q)  # (B, T, H*Q)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """gpt2: Linear -> GELU (tanh or exact) -> Linear. llama: SwiGLU with gate and up fused in one Linear."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.gated = args.family == "llama"
        self.approximate = args.gelu_approximate
        width = 2 * args.intermediate_size if self.gated else args.intermediate_size
        self.fc = nn.Linear(args.hidden_size, width, bias=args.bias)  # llama rows: [gate (I) | up (I)]
        self.proj = nn.Linear(args.intermediate_size, args.hidden_size, bias=args.bias)
        self.drop = nn.Dropout(args.dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)  # (B, T, I) or (B, T, 2I)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)  # (B, T, I) each
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.approximate)  # exact erf GELU is ~2-3x cheaper than tanh on a CPU
        return self.drop(self.proj(h))  # (B, T, D)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, args: ModelArgs, layer_idx: int) -> None:
        super().__init__()
        self.norm1 = make_norm(args)
        self.attn = Attention(args, layer_idx)
        self.norm2 = make_norm(args)
        self.mlp = MLP(args)

    def forward(
        self, x: Tensor, rope: Rope | None = None, cache: KVCache | None = None, mask: Tensor | None = None
    ) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, cache, mask)  # (B, T, D)
        return x + self.mlp(self.norm2(x))
