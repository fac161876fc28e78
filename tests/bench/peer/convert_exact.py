"""Converts a HybridCache checkpoint (HF safetensors + config.json + tokenizer) to GGUF with
llama.cpp's own convert_hf_to_gguf.py, so that llama.cpp computes the same function.

Usage: convert_exact.py --llama_src DIR --checkpoint DIR --out FILE.gguf [--stock]

Why a step before the converter (docs/benchmarks.md, "The q/k layout question"):
Bamba applies rotate-half (NeoX) RoPE to the first rotary_dim = attn_rotary_emb dims of each
head and passes the rest through (mamba_ssm's MHA with flash-attn's non-interleaved rotary;
transformers' BambaConfig hardcodes partial_rotary_factor 0.5). llama.cpp runs these archs with
LLAMA_ROPE_TYPE_NORM (rotates consecutive pairs (2i, 2i+1) of the first n_rot dims), and its
converter reorders q/k rows from rotate-half to consecutive pairs with LlamaModel.permute over
the *whole* head: row 2i <- i, 2i+1 <- i + head_dim/2. That is exact only when
rotary_dim == head_dim. With rotary_dim < head_dim the pairs llama.cpp rotates are
(i, i + head_dim/2) instead of (i, i + rotary_dim/2), and the two disagree from the first token.

So, for partial rotary, this script writes a copy of the checkpoint whose q/k rows are
pre-arranged such that the stock converter's whole-head permutation yields the permutation that
is right for partial rotary (rows 2i <- i, 2i+1 <- i + rotary_dim/2 inside the first rotary_dim
dims, the rest untouched). Everything else (tensor names, the Mamba layers, GGUF metadata) is
the stock converter's. --stock skips the step (to show the disagreement).

The second adjustment is the tokenizer: the converter identifies a BPE pre-tokenizer by the
hash of one test string's token ids, which is vocabulary specific, so a synthetic vocabulary is
never recognized. Ours is a plain ByteLevel pre-tokenizer with the GPT-2 regex and no
normalizer, i.e. llama.cpp's "gpt-2" pre-tokenizer; that is the answer given when (and only
when) the tokenizer.json says exactly that.

Runs under a Python with torch (Debian's python3-torch is 1.13, older than the converter's
pin: the float8 dtype names it references at import are aliased; this checkpoint has none).
"""
import argparse
import json
import os
import shutil
import sys


def rotary_dim_of(config):
    """Returns (head_dim, rotary_dim) of the attention layers, or None without RoPE."""
    model_type = config.get("model_type")
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    if model_type == "bamba":
        rot = config.get("attn_rotary_emb")
        if rot is None:
            # llama.cpp would take n_rot = head_dim while transformers rotates half.
            raise SystemExit("bamba config without attn_rotary_emb: llama.cpp would rotate the "
                             "whole head; add attn_rotary_emb = head_dim * partial_rotary_factor")
        factor = config.get("partial_rotary_factor", 0.5)
        if abs(head_dim * factor - rot) > 1e-6:
            raise SystemExit(f"attn_rotary_emb {rot} != head_dim {head_dim} x "
                             f"partial_rotary_factor {factor}")
        return head_dim, int(rot)
    if model_type == "granitemoehybrid":
        if config.get("position_embedding_type") == "rope":
            return head_dim, head_dim
        return None
    return None  # nemotron_h: no RoPE


def pre_permutation(head_dim, rotary_dim):
    """Row order `src` (new row k = old row src[k]) for one head, such that the converter's
    whole-head permutation applied after it gives the partial-rotary NORM order."""
    half_full, half_rot = head_dim // 2, rotary_dim // 2
    # What llama.cpp's NORM rope needs: consecutive pairs of the rotate-half rows.
    want = [(k // 2) + (k % 2) * half_rot if k < rotary_dim else k for k in range(head_dim)]
    # What the converter does to its input: out[2i + j] = in[i + j * head_dim / 2].
    conv = [(k // 2) + (k % 2) * half_full for k in range(head_dim)]
    src = [0] * head_dim
    for k in range(head_dim):
        src[conv[k]] = want[k]
    return src


def write_permuted_copy(checkpoint, out_dir, config, head_dim, rotary_dim):
    import torch
    from safetensors.torch import load_file, save_file

    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    src = torch.tensor(pre_permutation(head_dim, rotary_dim))
    os.makedirs(out_dir, exist_ok=True)
    changed = 0
    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        if not name.endswith(".safetensors"):
            if os.path.isfile(path):
                shutil.copy(path, os.path.join(out_dir, name))
            continue
        tensors = load_file(path)
        for key, t in tensors.items():
            if ".self_attn.q_proj." in key or ".self_attn.k_proj." in key:
                n = heads if ".q_proj." in key else kv_heads
                shaped = t.reshape(n, head_dim, *t.shape[1:])
                tensors[key] = shaped[:, src].reshape(t.shape).contiguous()
                changed += 1
        save_file(tensors, os.path.join(out_dir, name), metadata={"format": "pt"})
    if changed == 0:
        raise SystemExit("no q_proj/k_proj tensors found to permute")
    return changed


def is_gpt2_byte_level(checkpoint):
    with open(os.path.join(checkpoint, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    pre = tok.get("pre_tokenizer") or {}
    return (tok.get("model", {}).get("type") == "BPE" and tok.get("normalizer") is None
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False))


def run_converter(llama_src, model_dir, out, checkpoint_for_tokenizer):
    import torch

    # Debian's torch 1.13 lacks the float8 dtypes the converter names in class bodies.
    for name in ("float8_e4m3fn", "float8_e5m2"):
        if not hasattr(torch, name):
            setattr(torch, name, torch.uint8)
    sys.path.insert(0, llama_src)
    sys.path.insert(1, os.path.join(llama_src, "gguf-py"))
    import conversion.base as base  # noqa: E402 (needs the path above)

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if is_gpt2_byte_level(checkpoint_for_tokenizer):
                return "gpt-2"
            raise

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    import convert_hf_to_gguf  # noqa: E402

    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", out, "--outtype", "f32"]
    convert_hf_to_gguf.main()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama_src", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stock", action="store_true", help="no q/k pre-permutation")
    args = ap.parse_args()

    with open(os.path.join(args.checkpoint, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    rot = rotary_dim_of(config)
    model_dir = args.checkpoint
    if rot is not None and rot[1] < rot[0] and not args.stock:
        model_dir = args.out + ".src"
        shutil.rmtree(model_dir, ignore_errors=True)
        n = write_permuted_copy(args.checkpoint, model_dir, config, *rot)
        print(f"convert_exact: head_dim {rot[0]}, rotary_dim {rot[1]}: pre-permuted {n} q/k "
              "tensors for partial rotary", file=sys.stderr)
    tmp = args.out + ".tmp"
    run_converter(args.llama_src, model_dir, tmp, args.checkpoint)
    os.replace(tmp, args.out)
    if model_dir != args.checkpoint:
        shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
