"""Cross-checks the synthetic checkpoint against the Hugging Face libraries.

Generates the tiny checkpoint with build/bin/hc-checkpoint and checks that:
  * `tokenizers` loads tokenizer.json and encodes a set of strings (ASCII,
    Latin-1, CJK, emoji, whitespace runs, contractions, special tokens) to
    exactly the ids our C++ tokenizer produces (via build/bin/hc-tokenize);
  * `safetensors` (numpy) loads model.safetensors with every tensor and the
    same shapes our config implies;
  * `transformers` loads config.json as a BambaConfig and the tokenizer as a
    PreTrainedTokenizerFast, and apply_chat_template renders the same ids as
    our chat template;
  * with torch installed, BambaForCausalLM.from_pretrained loads the weights
    with no missing or unexpected keys and produces finite logits.
scripts/install-deps.sh installs every package but torch (a CPU wheel of
several hundred MB): a part whose package is missing fails, naming it; only
the torch part is skipped without torch.

Environment: HC_BIN_DIR (default <repo>/build/bin).
Run: python3 -m unittest tests/python/test_checkpoint_hf.py
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HC_BIN_DIR", os.path.join(REPO, "build", "bin"))

SAMPLES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "It's a test: we'll see, they've said, I'd go, you're right, I'm sure.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnew\n\nlines\r\n",
    "numbers 12345 and 3.14159, 2024-06-01",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber",
    "\u4e2d\u6587\u6d4b\u8bd5\u3002\u65e5\u672c\u8a9e",
    "emoji \U0001F98A\U0001F389 and \u2764\ufe0f",
    "<|start_of_role|>user<|end_of_role|>Hi!<|end_of_text|>\n",
    "symbols $%^&*()[]{}<>?/\\|~`",
    "",
]

CHATS = [
    [{"role": "user", "content": "Hello there!"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Thanks \U0001F642"},
    ],
]


def random_strings(n, seed):
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x400, 0x4FF), (0x4E00, 0x9FFF), (0x1F300, 0x1F5FF)]
    pieces = [" ", "  ", "\n", "'s", "'ll", "the", " the", "123", "!?"]
    out = []
    for _ in range(n):
        s = []
        for _ in range(rng.randrange(1, 30)):
            if rng.random() < 0.3:
                s.append(rng.choice(pieces))
            else:
                lo, hi = rng.choice(ranges)
                s.append(chr(rng.randint(lo, hi)))
        out.append("".join(s))
    return out


def have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def require(testcase, *modules):
    """Fails the test (not skips it) when a package install-deps.sh installs
    is missing: a cross-check that did not run has not passed."""
    missing = [m for m in modules if not have(m)]
    if missing:
        testcase.fail(f"{', '.join(missing)} not installed: scripts/install-deps.sh installs "
                      f"{'them' if len(missing) > 1 else 'it'} into this python3 ({sys.executable})")


class CheckpointHfTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="hc_ckpt_hf_")
        subprocess.run(
            [os.path.join(BIN, "hc-checkpoint"), "--preset", "tiny", "--out", cls.dir],
            check=True, stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def our_ids(self, items, chat=False):
        args = [os.path.join(BIN, "hc-tokenize"), "--model", self.dir]
        if chat:
            args.append("--chat")
        stdin = "".join(json.dumps(x) + "\n" for x in items)
        out = subprocess.run(args, input=stdin.encode(), check=True, capture_output=True)
        return [json.loads(line) for line in out.stdout.decode().splitlines()]

    def test_tokenizers_library_encodes_like_us(self):
        require(self, "tokenizers")
        from tokenizers import Tokenizer
        hf = Tokenizer.from_file(os.path.join(self.dir, "tokenizer.json"))
        # Long single words too: BPE merges them pair by pair (a heap of
        # candidate merges), which must give exactly the library's ids.
        rng = random.Random(11)
        long_words = ["".join(rng.choice("thequickbrownfox") for _ in range(n)) for n in (300, 5000)]
        long_words += ["a" * 4097, " " * 3000, "the" * 2000]
        texts = SAMPLES + random_strings(200, seed=7) + long_words
        ours = self.our_ids(texts)
        for text, ids in zip(texts, ours):
            self.assertEqual(hf.encode(text, add_special_tokens=False).ids, ids, repr(text))
            self.assertEqual(hf.decode(ids, skip_special_tokens=False), text, repr(text))

    def test_safetensors_library_loads_weights(self):
        require(self, "safetensors", "numpy")
        from safetensors.numpy import load_file
        tensors = load_file(os.path.join(self.dir, "model.safetensors"))
        with open(os.path.join(self.dir, "config.json")) as f:
            cfg = json.load(f)
        d, v = cfg["hidden_size"], cfg["vocab_size"]
        self.assertEqual(tensors["model.embed_tokens.weight"].shape, (v, d))
        self.assertEqual(tensors["lm_head.weight"].shape, (v, d))
        d_inner = cfg["mamba_expand"] * d
        h, n, g = cfg["mamba_n_heads"], cfg["mamba_d_state"], cfg["mamba_n_groups"]
        for i in range(cfg["num_hidden_layers"]):
            if i in cfg["attn_layer_indices"]:
                self.assertIn(f"model.layers.{i}.self_attn.q_proj.weight", tensors)
            else:
                self.assertEqual(tensors[f"model.layers.{i}.mamba.in_proj.weight"].shape,
                                 (2 * d_inner + 2 * g * n + h, d))
                self.assertEqual(tensors[f"model.layers.{i}.mamba.conv1d.weight"].shape,
                                 (d_inner + 2 * g * n, 1, cfg["mamba_d_conv"]))

    def test_transformers_loads_config_tokenizer_and_template(self):
        # jinja2 renders apply_chat_template; transformers does not depend on it.
        require(self, "transformers", "jinja2")
        from transformers import AutoConfig, PreTrainedTokenizerFast
        cfg = AutoConfig.from_pretrained(self.dir)
        self.assertEqual(cfg.model_type, "bamba")
        with open(os.path.join(self.dir, "config.json")) as f:
            ours = json.load(f)
        self.assertEqual(list(cfg.attn_layer_indices), ours["attn_layer_indices"])
        self.assertEqual(cfg.num_hidden_layers, ours["num_hidden_layers"])
        self.assertEqual(cfg.mamba_d_head, ours["mamba_d_head"])
        self.assertEqual(cfg.head_dim, ours["head_dim"])
        tok = PreTrainedTokenizerFast.from_pretrained(self.dir)
        self.assertEqual(tok.eos_token, "<|end_of_text|>")
        self.assertEqual(tok.eos_token_id, cfg.eos_token_id)
        self.assertEqual(tok.pad_token_id, cfg.pad_token_id)
        ours = self.our_ids(CHATS, chat=True)
        for chat, ids in zip(CHATS, ours):
            hf_ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
            if isinstance(hf_ids, dict) or hasattr(hf_ids, "keys"):
                hf_ids = hf_ids["input_ids"]
            self.assertEqual(list(hf_ids), ids)

    def test_reference_forward_is_well_conditioned_and_greedy_is_varied(self):
        require(self, "safetensors", "numpy")
        import numpy as np
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bamba_reference as ref
        cfg, w = ref.load(self.dir)
        logits = ref.forward(cfg, w, list(range(5, 69)))
        self.assertTrue(np.isfinite(logits).all())
        std = logits.std(axis=-1)
        self.assertTrue(((std > 0.3) & (std < 10)).all(), std)
        out = ref.greedy(cfg, w, [300, 400, 500], 32)[3:]
        self.assertGreaterEqual(len(set(out)), 16, out)
        # The context matters, not only the last token.
        a = ref.forward(cfg, w, [11, 12, 13, 42])[-1]
        b = ref.forward(cfg, w, [77, 78, 79, 42])[-1]
        self.assertGreater(np.abs(a - b).max(), 0.1)

    @unittest.skipUnless(have("torch"), "torch not installed (optional, install-deps.sh does not install it)")
    def test_transformers_model_loads_weights(self):
        require(self, "transformers")
        import numpy as np
        import torch
        from transformers import BambaForCausalLM
        model, info = BambaForCausalLM.from_pretrained(self.dir, output_loading_info=True)
        self.assertFalse(info["missing_keys"])
        self.assertFalse(info["unexpected_keys"])
        self.assertFalse(info.get("mismatched_keys"))
        model.eval()
        ids = list(range(5, 45))  # 40 tokens: crosses the tiny preset's 16-token Mamba chunks
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double().numpy()
        self.assertTrue(np.isfinite(logits).all())
        # transformers (chunked SSD, fp32) agrees with the numpy reference
        # (sequential recurrence, fp64).
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bamba_reference as ref
        cfg, w = ref.load(self.dir)
        expected = ref.forward(cfg, w, ids)
        rel = np.abs(logits - expected).max() / np.abs(expected).max()
        self.assertLess(rel, 1e-4, rel)
        # Greedy generation through transformers yields varied tokens.
        with torch.no_grad():
            out = model.generate(torch.tensor([[300, 400, 500]]), max_new_tokens=24,
                                 do_sample=False)[0, 3:].tolist()
        self.assertGreaterEqual(len(set(out)), 12, out)

if __name__ == "__main__":
    unittest.main()
