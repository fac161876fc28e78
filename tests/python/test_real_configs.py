"""The released config.json files of tests/data/real_configs against transformers and
the numpy fp64 references:

  * transformers' own config classes read each released file into the layer mix its
    model card states (the numbers are written here, from the model cards);
  * `hc-checkpoint --from_config` scales each down (every key kept, sizes shrunk, the
    real layer pattern); transformers' config classes accept the scaled file and see the
    same layer kinds as in the real one;
  * the C++ model (build/bin/hc-logits) on the scaled checkpoint equals the independent
    numpy references of tests/python/hybrid_reference.py, for prompts within and across
    Mamba chunks.

Environment: HC_BIN_DIR (default <repo>/build/bin).
Run: python3 -m unittest tests/python/test_real_configs.py
"""

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HC_BIN_DIR", os.path.join(REPO, "build", "bin"))
REAL = os.path.join(REPO, "tests", "data", "real_configs")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# directory -> (model_type, layers kept when scaled (0: all), layer-kind counts of the real
# model from its model card: mamba / attention / mlp / moe blocks)
MODELS = {
    "bamba-9b": ("bamba", 0, {"mamba": 29, "attention": 3}),
    "nemotron-h-56b-base-8k": ("nemotron_h", 24, {"mamba": 54, "attention": 10, "mlp": 54}),
    "nemotron-3-nano-30b-a3b-bf16": ("nemotron_h", 0, {"mamba": 23, "attention": 6, "moe": 23}),
}
PROMPTS = [[42], list(range(100, 113)), [(7 * i + 3) % 1000 + 4 for i in range(40)]]
TOLERANCE = 1e-4  # max |C++ - reference| / max |reference|

KIND = {"linear_attention": "mamba", "mamba": "mamba", "full_attention": "attention",
        "attention": "attention", "mlp": "mlp", "moe": "moe"}


def layer_kinds(cfg):
    """Block kinds per layer as transformers' config object states them."""
    return [KIND[t] for t in cfg.layers_block_type]


def hc_logits(model_dir, ids):
    out = subprocess.run([os.path.join(BIN, "hc-logits"), "--model", model_dir,
                          "--tokens", ",".join(map(str, ids))], check=True, capture_output=True)
    return json.loads(out.stdout)


class RealConfigsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="hc_real_configs_")
        cls.scaled = {}
        for name, (_, layers, _) in MODELS.items():
            d = os.path.join(cls.root, name)
            subprocess.run([os.path.join(BIN, "hc-checkpoint"), "--from_config",
                            os.path.join(REAL, name), "--out", d, "--scaled_layers", str(layers)],
                           check=True, stdout=subprocess.DEVNULL)
            cls.scaled[name] = d

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_transformers_reads_the_released_configs_as_the_model_cards_say(self):
        from transformers import AutoConfig
        for name, (model_type, _, counts) in MODELS.items():
            with self.subTest(model=name):
                cfg = AutoConfig.from_pretrained(os.path.join(REAL, name))
                self.assertEqual(cfg.model_type, model_type)
                self.assertEqual(dict(collections.Counter(layer_kinds(cfg))), counts)

    def test_transformers_reads_the_scaled_configs_with_the_real_layer_pattern(self):
        from transformers import AutoConfig
        for name, (model_type, layers, _) in MODELS.items():
            with self.subTest(model=name):
                real = AutoConfig.from_pretrained(os.path.join(REAL, name))
                scaled = AutoConfig.from_pretrained(self.scaled[name])
                self.assertEqual(scaled.model_type, model_type)
                n = layers or len(layer_kinds(real))
                self.assertEqual(layer_kinds(scaled), layer_kinds(real)[:n])
                self.assertEqual(scaled.hidden_size, 64)

    def test_cpp_logits_on_scaled_checkpoints_equal_numpy_reference(self):
        import numpy as np
        import hybrid_reference as ref
        for name, (model_type, _, _) in MODELS.items():
            cfg, w = ref.load(self.scaled[name])
            self.assertEqual(cfg["model_type"], model_type)
            for ids in PROMPTS:
                with self.subTest(model=name, tokens=len(ids)):
                    want = ref.forward(cfg, w, ids)[-1]
                    got = np.array(hc_logits(self.scaled[name], ids))
                    self.assertEqual(got.shape, want.shape)
                    rel = np.abs(got - want).max() / np.abs(want).max()
                    self.assertLess(rel, TOLERANCE)


if __name__ == "__main__":
    unittest.main()
