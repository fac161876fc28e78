"""The q/k row order that tests/bench/peer/convert_exact.py gives llama.cpp's converter.

llama.cpp rotates consecutive pairs (2i, 2i+1) of the first n_rot dims of a head (rope type
NORM); Bamba rotates (i, i + rotary_dim/2) of the first rotary_dim dims (rotate-half, NeoX) and
passes the rest through. The stock converter's whole-head permutation only maps one onto the
other when rotary_dim == head_dim. These tests check, in fp64 numpy, that attention scores
computed llama.cpp's way on the rows convert_exact.py produces equal the Bamba reference's
(tests/python/bamba_reference.py), and that without the pre-permutation they do not.
"""
import os
import sys
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench", "peer"))
from bamba_reference import rope as neox_partial_rope  # noqa: E402
from convert_exact import pre_permutation, rotary_dim_of  # noqa: E402

THETA = 10000.0


def converter_permute(rows, head_dim):
    """llama.cpp's LlamaModel.permute on one head: out[2i + j] = in[i + j * head_dim / 2]."""
    half = head_dim // 2
    return rows[[(k // 2) + (k % 2) * half for k in range(head_dim)]]


def ggml_norm_rope(x, positions, n_rot):
    """ggml_rope_ext, mode NORM: pairs (2i, 2i+1) of the first n_rot dims. x: [T, head_dim]."""
    out = x.copy()
    for t, p in enumerate(positions):
        for i in range(n_rot // 2):
            a = p * THETA ** (-2.0 * i / n_rot)
            x0, x1 = x[t, 2 * i], x[t, 2 * i + 1]
            out[t, 2 * i] = x0 * np.cos(a) - x1 * np.sin(a)
            out[t, 2 * i + 1] = x0 * np.sin(a) + x1 * np.cos(a)
    return out


def scores_reference(wq, wk, xs, positions, rotary_dim):
    q = (xs @ wq.T)[:, None, :]
    k = (xs @ wk.T)[:, None, :]
    q = neox_partial_rope(q, positions, rotary_dim, THETA)[:, 0]
    k = neox_partial_rope(k, positions, rotary_dim, THETA)[:, 0]
    return q @ k.T


def scores_llama(wq, wk, xs, positions, n_rot):
    q = ggml_norm_rope(xs @ wq.T, positions, n_rot)
    k = ggml_norm_rope(xs @ wk.T, positions, n_rot)
    return q @ k.T


class PeerConvertTest(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.head_dim, self.rotary_dim = 16, 8
        self.wq = rng.standard_normal((self.head_dim, 12))
        self.wk = rng.standard_normal((self.head_dim, 12))
        self.xs = rng.standard_normal((6, 12))
        self.positions = np.array([0, 1, 2, 5, 17, 300])
        self.want = scores_reference(self.wq, self.wk, self.xs, self.positions, self.rotary_dim)

    def convert(self, w, pre):
        if pre:
            w = w[pre_permutation(self.head_dim, self.rotary_dim)]
        return converter_permute(w, self.head_dim)

    def test_pre_permuted_rows_make_llama_rope_equal_partial_rotate_half(self):
        got = scores_llama(self.convert(self.wq, True), self.convert(self.wk, True), self.xs,
                           self.positions, self.rotary_dim)
        np.testing.assert_allclose(got, self.want, rtol=1e-12, atol=1e-9)

    def test_stock_conversion_disagrees_for_partial_rotary(self):
        got = scores_llama(self.convert(self.wq, False), self.convert(self.wk, False), self.xs,
                           self.positions, self.rotary_dim)
        self.assertGreater(np.abs(got - self.want).max(), 1e-3)

    def test_stock_conversion_is_exact_for_full_rotary(self):
        want = scores_reference(self.wq, self.wk, self.xs, self.positions, self.head_dim)
        got = scores_llama(converter_permute(self.wq, self.head_dim),
                           converter_permute(self.wk, self.head_dim), self.xs, self.positions,
                           self.head_dim)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)

    def test_pre_permutation_is_identity_for_full_rotary(self):
        self.assertEqual(pre_permutation(16, 16), list(range(16)))

    def test_rotary_dim_of_configs(self):
        bamba = {"model_type": "bamba", "num_attention_heads": 32, "hidden_size": 4096,
                 "attn_rotary_emb": 64}  # Bamba-9B
        self.assertEqual(rotary_dim_of(bamba), (128, 64))
        with self.assertRaises(SystemExit):  # llama.cpp would rotate the whole head
            rotary_dim_of({k: v for k, v in bamba.items() if k != "attn_rotary_emb"})
        with self.assertRaises(SystemExit):  # disagrees with partial_rotary_factor
            rotary_dim_of(dict(bamba, partial_rotary_factor=1.0))
        granite = {"model_type": "granitemoehybrid", "num_attention_heads": 12,
                   "hidden_size": 768, "position_embedding_type": "nope"}
        self.assertIsNone(rotary_dim_of(granite))
        self.assertEqual(rotary_dim_of(dict(granite, position_embedding_type="rope")), (64, 64))
        self.assertIsNone(rotary_dim_of({"model_type": "nemotron_h", "num_attention_heads": 8,
                                         "hidden_size": 512}))


if __name__ == "__main__":
    unittest.main()
