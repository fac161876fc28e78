"""The C++ model (build/bin/hc-logits, fp32, CPU) against the independent numpy fp64
references of tests/python/hybrid_reference.py, one per architecture, on the tiny
synthetic checkpoints that build/bin/hc-checkpoint writes with the real tensor names:
bamba, granitemoehybrid (NoPE dense; RoPE + MoE) and nemotron_h (relu2 MLP, MoE,
2 Mamba groups). Also: transformers' config classes accept the written config.json, and
tensor parallelism / chunked prefill in hc-logits give the same logits.

Environment: HC_BIN_DIR (default <repo>/build/bin).
Run: python3 -m unittest tests/python/test_hybrid_reference.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HC_BIN_DIR", os.path.join(REPO, "build", "bin"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (--arch, --preset, model_type)
CHECKPOINTS = [
    ("bamba", "tiny", "bamba"),
    ("granitemoehybrid", "tiny", "granitemoehybrid"),
    ("granitemoehybrid", "moe-tiny", "granitemoehybrid"),
    ("nemotron_h", "tiny", "nemotron_h"),
]
# Prompt lengths: one token, within the first 16-token Mamba chunk, across chunks.
PROMPTS = [[42], list(range(100, 113)), [(7 * i + 3) % 1000 + 4 for i in range(40)]]
TOLERANCE = 1e-4  # max |C++ - reference| / max |reference|


def hc_logits(model_dir, ids, tp=1, chunks=None):
    args = [os.path.join(BIN, "hc-logits"), "--model", model_dir,
            "--tokens", ",".join(map(str, ids)), "--tp", str(tp)]
    if chunks:
        args += ["--chunks", ",".join(map(str, chunks))]
    out = subprocess.run(args, check=True, capture_output=True)
    return json.loads(out.stdout)


class HybridReferenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="hc_hybrid_ref_")
        cls.dirs = {}
        for arch, preset, _ in CHECKPOINTS:
            d = os.path.join(cls.root, f"{arch}-{preset}")
            subprocess.run([os.path.join(BIN, "hc-checkpoint"), "--arch", arch, "--preset", preset,
                            "--out", d], check=True, stdout=subprocess.DEVNULL)
            cls.dirs[(arch, preset)] = d

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_cpp_logits_equal_numpy_reference(self):
        import numpy as np
        import hybrid_reference as ref
        for arch, preset, model_type in CHECKPOINTS:
            cfg, w = ref.load(self.dirs[(arch, preset)])
            self.assertEqual(cfg["model_type"], model_type)
            for ids in PROMPTS:
                with self.subTest(arch=arch, preset=preset, tokens=len(ids)):
                    want = ref.forward(cfg, w, ids)[-1]
                    got = np.array(hc_logits(self.dirs[(arch, preset)], ids))
                    self.assertEqual(got.shape, want.shape)
                    rel = np.abs(got - want).max() / np.abs(want).max()
                    self.assertLess(rel, TOLERANCE)

    def test_reference_depends_on_the_context(self):
        """The checkpoints are not degenerate: the context changes the last logits."""
        import numpy as np
        import hybrid_reference as ref
        for arch, preset, _ in CHECKPOINTS:
            cfg, w = ref.load(self.dirs[(arch, preset)])
            a = ref.forward(cfg, w, [11, 12, 13, 42])[-1]
            b = ref.forward(cfg, w, [77, 78, 79, 42])[-1]
            with self.subTest(arch=arch, preset=preset):
                self.assertGreater(np.abs(a - b).max(), 0.05 * np.abs(a).max())

    def test_tensor_parallel_and_chunked_prefill_equal_one_prefill(self):
        import numpy as np
        ids = PROMPTS[2]
        for arch, preset, _ in CHECKPOINTS:
            d = self.dirs[(arch, preset)]
            one = np.array(hc_logits(d, ids))
            for tp, chunks in [(2, None), (1, [1, 16, 5]), (2, [17])]:
                with self.subTest(arch=arch, preset=preset, tp=tp, chunks=chunks):
                    got = np.array(hc_logits(d, ids, tp=tp, chunks=chunks))
                    self.assertLess(np.abs(got - one).max() / np.abs(one).max(), TOLERANCE)

    def test_transformers_config_classes_accept_the_configs(self):
        from transformers import AutoConfig
        for arch, preset, model_type in CHECKPOINTS:
            d = self.dirs[(arch, preset)]
            with open(os.path.join(d, "config.json")) as f:
                ours = json.load(f)
            cfg = AutoConfig.from_pretrained(d)
            with self.subTest(arch=arch, preset=preset):
                self.assertEqual(cfg.model_type, model_type)
                self.assertEqual(cfg.num_hidden_layers, ours["num_hidden_layers"])
                if model_type == "nemotron_h":
                    self.assertEqual(cfg.hybrid_override_pattern, ours["hybrid_override_pattern"])
                if model_type == "granitemoehybrid":
                    self.assertEqual(len(cfg.layer_types), ours["num_hidden_layers"])


if __name__ == "__main__":
    unittest.main()
