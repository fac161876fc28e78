"""Plain numpy fp64 references of the Granite-4.0-H (granitemoehybrid) and Nemotron-H
(nemotron_h) forward passes, one function per architecture, written from transformers'
modeling_granitemoehybrid.py and modeling_nemotron_h.py (5.x) as docs/model-facts.md
describes them. Sequential per-token Mamba2 recurrence, full causal attention, experts
computed for every token and masked by the routing: slow and simple on purpose, a
cross-check for the C++ model on the tiny checkpoints (torch is not needed).

    python3 tests/python/hybrid_reference.py CHECKPOINT_DIR [token ids...]
prints the greedy continuation.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bamba_reference  # noqa: E402  (Bamba's reference, and the checkpoint loader)


def load(ckpt_dir):
    return bamba_reference.load(ckpt_dir)


def rmsnorm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def rope(x, positions, theta):
    # NeoX rotate-half over the whole head (granitemoehybrid's rotary covers head_dim).
    hd = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    freqs = np.outer(positions, inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)[:, None]
    half = hd // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * np.cos(emb) + rotated * np.sin(emb)


def attention(w, p, x, hq, hkv, hd, scale, rope_theta=None):
    t = x.shape[0]
    q = (x @ w[p + "q_proj.weight"].T).reshape(t, hq, hd)
    k = (x @ w[p + "k_proj.weight"].T).reshape(t, hkv, hd)
    v = (x @ w[p + "v_proj.weight"].T).reshape(t, hkv, hd)
    if rope_theta is not None:
        pos = np.arange(t)
        q, k = rope(q, pos, rope_theta), rope(k, pos, rope_theta)
    out = np.zeros((t, hq, hd))
    mask = np.tril(np.ones((t, t), dtype=bool))
    for h in range(hq):
        kv = h // (hq // hkv)
        s = np.where(mask, q[:, h] @ k[:, kv].T * scale, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        out[:, h] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, kv]
    return out.reshape(t, hq * hd) @ w[p + "o_proj.weight"].T


def mamba2(w, p, x, heads, head_dim, groups, state, conv_width, eps, dt_min, dt_max):
    """Mamba2 mixer: in_proj -> z | xBC | dt, causal depthwise conv + SiLU, selective
    scan (per token), gated RMSNorm over groups of d_inner / groups, out_proj."""
    t = x.shape[0]
    d_inner = heads * head_dim
    conv_dim = d_inner + 2 * groups * state
    zxbcdt = x @ w[p + "in_proj.weight"].T
    z, xbc, dt = zxbcdt[:, :d_inner], zxbcdt[:, d_inner:d_inner + conv_dim], zxbcdt[:, -heads:]
    cw = w[p + "conv1d.weight"][:, 0, :]
    padded = np.concatenate([np.zeros((conv_width - 1, conv_dim)), xbc], axis=0)
    conv = np.stack([(padded[i:i + conv_width] * cw.T).sum(axis=0) for i in range(t)])
    conv = silu(conv + w.get(p + "conv1d.bias", 0.0))
    xs = conv[:, :d_inner].reshape(t, heads, head_dim)
    b = conv[:, d_inner:d_inner + groups * state].reshape(t, groups, state)
    c = conv[:, d_inner + groups * state:].reshape(t, groups, state)
    dt = np.clip(softplus(dt + w[p + "dt_bias"]), dt_min, dt_max)
    a = -np.exp(w[p + "A_log"])
    s = np.zeros((heads, head_dim, state))
    ys = np.zeros((t, heads, head_dim))
    group = np.arange(heads) // (heads // groups)
    for i in range(t):
        s = np.exp(dt[i] * a)[:, None, None] * s + \
            dt[i][:, None, None] * xs[i][:, :, None] * b[i, group][:, None, :]
        ys[i] = np.einsum("hpn,hn->hp", s, c[i, group]) + w[p + "D"][:, None] * xs[i]
    y = (ys.reshape(t, d_inner) * silu(z)).reshape(t, groups, d_inner // groups)
    y = y / np.sqrt(np.mean(y * y, axis=-1, keepdims=True) + eps)
    return (y.reshape(t, d_inner) * w[p + "norm.weight"]) @ w[p + "out_proj.weight"].T


def forward_granitemoehybrid(cfg, w, ids):
    """GraniteMoeHybridForCausalLM: embeddings x embedding_multiplier; per layer
    h += residual_multiplier * mixer(input_layernorm(h)), then
    h += residual_multiplier * (moe(x) + shared_mlp(x)) with x = post_attention_layernorm(h);
    logits = lm_head(norm(h)) / logits_scaling."""
    eps = cfg.get("rms_norm_eps", 1e-6)
    hq = cfg["num_attention_heads"]
    hkv = cfg.get("num_key_value_heads") or hq
    hd = cfg.get("head_dim") or cfg["hidden_size"] // hq
    rope_theta = cfg.get("rope_theta", 10000.0) if cfg.get("position_embedding_type") == "rope" else None
    res = cfg.get("residual_multiplier", 1.0)
    n_heads = cfg["mamba_n_heads"]
    d_head = cfg["mamba_d_head"]
    if d_head == "auto":
        d_head = cfg["mamba_expand"] * cfg["hidden_size"] // n_heads
    lo, hi = cfg.get("time_step_limit") or [0.0, float("inf")]
    experts, top_k = cfg.get("num_local_experts", 8), cfg.get("num_experts_per_tok", 2)
    h = w["model.embed_tokens.weight"][np.asarray(ids)] * cfg.get("embedding_multiplier", 1.0)
    for layer, kind in enumerate(cfg["layer_types"]):
        p = f"model.layers.{layer}."
        x = rmsnorm(h, w[p + "input_layernorm.weight"], eps)
        if kind in ("attention", "full_attention"):
            y = attention(w, p + "self_attn.", x, hq, hkv, hd, cfg.get("attention_multiplier", 1.0),
                          rope_theta)
        else:
            y = mamba2(w, p + "mamba.", x, n_heads, d_head, cfg["mamba_n_groups"],
                       cfg["mamba_d_state"], cfg["mamba_d_conv"], eps, lo, hi)
        h = h + y * res
        x = rmsnorm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate_up = x @ w[p + "shared_mlp.input_linear.weight"].T
        gate, up = np.split(gate_up, 2, axis=-1)  # torch chunk(2): the gate comes first
        y = (silu(gate) * up) @ w[p + "shared_mlp.output_linear.weight"].T
        if experts > 0:
            m = p + "block_sparse_moe."
            logits = x @ w[m + "router.layer.weight"].T
            for i in range(x.shape[0]):
                top = np.argsort(-logits[i], kind="stable")[:top_k]  # topk, then softmax
                weights = np.exp(logits[i, top] - logits[i, top].max())
                weights /= weights.sum()
                for e, wt in zip(top, weights):
                    g, u = np.split(w[m + "input_linear.weight"][e] @ x[i], 2)
                    y[i] += wt * (w[m + "output_linear.weight"][e] @ (silu(g) * u))
        h = h + y * res
    h = rmsnorm(h, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return (h @ head.T) / cfg.get("logits_scaling", 1.0)


def nemotron_pattern(cfg):
    if cfg.get("layers_block_type"):
        names = {"mamba": "M", "linear_attention": "M", "attention": "*", "full_attention": "*",
                 "mlp": "-", "moe": "E"}
        return "".join(names[t] for t in cfg["layers_block_type"])
    return cfg["hybrid_override_pattern"]


def forward_nemotron_h(cfg, w, ids):
    """NemotronHForCausalLM: every layer is one block, h += block(norm(h)): Mamba2 (dt
    clamped to (time_step_min, inf)), attention without position embedding (scale
    head_dim^-0.5), relu2 MLP (down(relu(up x)^2)), or MoE (sigmoid router with correction
    bias and group-limited top-k, plus a relu2 shared expert); logits = lm_head(norm_f(h))."""
    root = "backbone." if "backbone.embeddings.weight" in w else "model."
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    hq, hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    # head_dim, or attention_head_dim as the checkpoints' own configuration_nemotron_h.py
    # names it (Nemotron-H-56B-Base-8K); NemotronHConfig's default 128.
    hd = cfg.get("head_dim") or cfg.get("attention_head_dim") or 128
    groups = cfg.get("n_groups", 8)
    h = w[root + "embeddings.weight"][np.asarray(ids)]
    relu2 = lambda v: np.maximum(v, 0.0) ** 2  # noqa: E731
    for layer, kind in enumerate(nemotron_pattern(cfg)):
        p = f"{root}layers.{layer}."
        x = rmsnorm(h, w[p + "norm.weight"], eps)
        m = p + "mixer."
        if kind == "M":
            y = mamba2(w, m, x, cfg["mamba_num_heads"], cfg["mamba_head_dim"], groups,
                       cfg["ssm_state_size"], cfg["conv_kernel"], eps, cfg.get("time_step_min", 0.001),
                       float("inf"))
        elif kind == "*":
            y = attention(w, m, x, hq, hkv, hd, hd ** -0.5)
        elif kind == "-":
            y = relu2(x @ w[m + "up_proj.weight"].T) @ w[m + "down_proj.weight"].T
        else:
            n_exp, top_k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
            n_group, topk_group = cfg.get("n_group", 1), cfg.get("topk_group", 1)
            scores = 1.0 / (1.0 + np.exp(-(x @ w[m + "gate.weight"].T)))
            choice = scores + w[m + "gate.e_score_correction_bias"]
            y = relu2(x @ w[m + "shared_experts.up_proj.weight"].T) @ \
                w[m + "shared_experts.down_proj.weight"].T
            per_group = n_exp // n_group
            for i in range(x.shape[0]):
                grouped = choice[i].reshape(n_group, per_group)
                group_scores = np.sort(grouped, axis=-1)[:, -2:].sum(axis=-1)
                keep = np.argsort(-group_scores, kind="stable")[:topk_group]
                masked = np.full(n_exp, -np.inf)
                for g in keep:
                    masked[g * per_group:(g + 1) * per_group] = grouped[g]
                top = np.argsort(-masked, kind="stable")[:top_k]
                weights = scores[i, top]
                if cfg.get("norm_topk_prob", True):
                    weights = weights / (weights.sum() + 1e-20)
                weights = weights * cfg.get("routed_scaling_factor", 1.0)
                for e, wt in zip(top, weights):
                    up = w[f"{m}experts.{e}.up_proj.weight"] @ x[i]
                    y[i] += wt * (w[f"{m}experts.{e}.down_proj.weight"] @ relu2(up))
        h = h + y
    h = rmsnorm(h, w[root + "norm_f.weight"], eps)
    return h @ w.get("lm_head.weight", w[root + "embeddings.weight"]).T


def forward(cfg, w, ids):
    """Logits of every position, for the checkpoint's model_type."""
    return {
        "bamba": bamba_reference.forward,
        "granitemoehybrid": forward_granitemoehybrid,
        "nemotron_h": forward_nemotron_h,
    }[cfg["model_type"]](cfg, w, ids)


def greedy(cfg, w, ids, steps):
    ids = list(ids)
    for _ in range(steps):
        ids.append(int(np.argmax(forward(cfg, w, ids)[-1])))
    return ids


if __name__ == "__main__":
    cfg_, w_ = load(sys.argv[1])
    print(greedy(cfg_, w_, [int(x) for x in sys.argv[2:]] or [10, 20, 30], 16))
