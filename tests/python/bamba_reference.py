"""Plain numpy reference of the Bamba forward pass (fp64, sequential).

Written from docs/model-facts.md (transformers' modeling_bamba semantics): pre-norm decoder
layers, Mamba2 mixer with the per-token recurrence, GQA attention with partial NeoX RoPE,
SwiGLU MLP. Slow and simple on purpose: a cross-check for the C++ model on the tiny checkpoint.

    python3 tests/python/bamba_reference.py CHECKPOINT_DIR [token ids...]
prints greedy continuations.
"""

import json
import os
import sys

import numpy as np


def load(ckpt_dir):
    from safetensors.numpy import load_file
    with open(os.path.join(ckpt_dir, "config.json")) as f:
        cfg = json.load(f)
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(ckpt_dir, "model.safetensors")).items()}
    return cfg, w


def rmsnorm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def rope(x, positions, rotary_dim, theta):
    # x: [T, heads, head_dim]; NeoX rotate-half on the first rotary_dim dims.
    inv_freq = 1.0 / theta ** (np.arange(0, rotary_dim, 2) / rotary_dim)
    freqs = np.outer(positions, inv_freq)                    # [T, rd/2]
    emb = np.concatenate([freqs, freqs], axis=-1)[:, None]   # [T, 1, rd]
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = np.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
    return np.concatenate([rot * np.cos(emb) + rotated * np.sin(emb), rest], axis=-1)


def attention(cfg, w, p, x):
    t = x.shape[0]
    hq, hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // hq
    rd = int(hd * cfg.get("partial_rotary_factor", 0.5))
    q = (x @ w[p + "q_proj.weight"].T).reshape(t, hq, hd)
    k = (x @ w[p + "k_proj.weight"].T).reshape(t, hkv, hd)
    v = (x @ w[p + "v_proj.weight"].T).reshape(t, hkv, hd)
    pos = np.arange(t)
    theta = cfg.get("rope_theta", 10000.0)  # BambaConfig's default; Bamba-9B's file names none
    q, k = rope(q, pos, rd, theta), rope(k, pos, rd, theta)
    out = np.zeros((t, hq, hd))
    mask = np.tril(np.ones((t, t), dtype=bool))
    for h in range(hq):
        kv = h // (hq // hkv)
        s = q[:, h] @ k[:, kv].T / np.sqrt(hd)
        s = np.where(mask, s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        out[:, h] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, kv]
    return out.reshape(t, hq * hd) @ w[p + "o_proj.weight"].T


def mamba(cfg, w, p, x):
    t = x.shape[0]
    d = cfg["hidden_size"]
    d_inner = cfg["mamba_expand"] * d
    h_, g_, n_ = cfg["mamba_n_heads"], cfg["mamba_n_groups"], cfg["mamba_d_state"]
    p_ = d_inner // h_
    wd = cfg["mamba_d_conv"]
    conv_dim = d_inner + 2 * g_ * n_
    zxbcdt = x @ w[p + "in_proj.weight"].T
    z, xbc, dt = zxbcdt[:, :d_inner], zxbcdt[:, d_inner:d_inner + conv_dim], zxbcdt[:, -h_:]
    cw = w[p + "conv1d.weight"][:, 0, :]                    # [conv_dim, W]
    padded = np.concatenate([np.zeros((wd - 1, conv_dim)), xbc], axis=0)
    conv = np.stack([(padded[i:i + wd] * cw.T).sum(axis=0) for i in range(t)])
    conv = silu(conv + w.get(p + "conv1d.bias", 0.0))
    xs = conv[:, :d_inner].reshape(t, h_, p_)
    b = conv[:, d_inner:d_inner + g_ * n_].reshape(t, g_, n_)
    c = conv[:, d_inner + g_ * n_:].reshape(t, g_, n_)
    lo, hi = cfg.get("time_step_limit", [0.0, float("inf")])
    dt = np.clip(softplus(dt + w[p + "dt_bias"]), lo, hi)
    a = -np.exp(w[p + "A_log"])
    state = np.zeros((h_, p_, n_))
    ys = np.zeros((t, h_, p_))
    group = np.arange(h_) // (h_ // g_)
    for i in range(t):
        bb, cc = b[i, group], c[i, group]                   # [H, N]
        state = np.exp(dt[i] * a)[:, None, None] * state + \
            dt[i][:, None, None] * xs[i][:, :, None] * bb[:, None, :]
        ys[i] = np.einsum("hpn,hn->hp", state, cc) + w[p + "D"][:, None] * xs[i]
    y = ys.reshape(t, d_inner) * silu(z)
    y = y.reshape(t, g_, d_inner // g_)
    y = y / np.sqrt(np.mean(y * y, axis=-1, keepdims=True) + cfg["rms_norm_eps"])
    y = y.reshape(t, d_inner) * w[p + "norm.weight"]
    return y @ w[p + "out_proj.weight"].T


def forward(cfg, w, ids):
    eps = cfg["rms_norm_eps"]
    h = w["model.embed_tokens.weight"][np.asarray(ids)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = rmsnorm(h, w[p + "input_layernorm.weight"], eps)
        if layer in (cfg.get("attn_layer_indices") or []):
            h = h + attention(cfg, w, p + "self_attn.", x)
        else:
            h = h + mamba(cfg, w, p + "mamba.", x)
        x = rmsnorm(h, w[p + "pre_ff_layernorm.weight"], eps)
        ff = p + "feed_forward."
        h = h + (silu(x @ w[ff + "gate_proj.weight"].T) * (x @ w[ff + "up_proj.weight"].T)) @ \
            w[ff + "down_proj.weight"].T
    h = rmsnorm(h, w["model.final_layernorm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return h @ head.T


def greedy(cfg, w, ids, steps):
    ids = list(ids)
    for _ in range(steps):
        ids.append(int(np.argmax(forward(cfg, w, ids)[-1])))
    return ids


if __name__ == "__main__":
    cfg_, w_ = load(sys.argv[1])
    prompt = [int(x) for x in sys.argv[2:]] or [10, 20, 30]
    print(greedy(cfg_, w_, prompt, 32))
