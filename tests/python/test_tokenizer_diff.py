"""Differential test: our C++ tokenizer against Hugging Face `tokenizers`.

For each tokenizer.json pipeline we support -- GPT-2 ByteLevel, the
Granite-4.0 (cl100k-style Split + ByteLevel) and Nemotron-H (tekken-style
Split + ByteLevel) ones, one with normalizers, one with every Split behavior --
a tokenizer is built with the same components: its vocab and merges trained by
`tokenizers`' BpeTrainer on a generated multi-script corpus (and, for the
synthetic checkpoints' styles, by our own trainer via hc-checkpoint), plus
added tokens with every option (special, lstrip, rstrip, single_word,
normalized). On 5,000+ generated strings per pipeline (many scripts, emoji
with ZWJ and skin tones, CJK, combining marks, whitespace runs with \\r\\n and
tabs, digit runs, code, contractions in mixed case, added tokens inside text)
and on random id sequences (which cut UTF-8 anywhere), the ids and the decoded
text must be identical:
  ids        encode(s, add_special_tokens=False)
  ids_post   encode(s, add_special_tokens=True)      (the post-processor)
  ids_plain  the same with encode_special_tokens=True (special tokens as text)
  decoded    decode(ids), and decode(ids, skip_special_tokens=True)
Deterministic (fixed seeds). Our side runs in one process per pipeline
(build/bin/hc-tokenize --batch).

Needs the `tokenizers` package (scripts/install-deps.sh installs it for the
python3 on PATH). Environment: HC_BIN_DIR (default <repo>/build/bin),
HC_TOKENIZER_DIFF_N (strings per pipeline, default 5000).
Run: python3 -m unittest tests/python/test_tokenizer_diff.py
"""

import json
import os
import random
import subprocess
import tempfile
import unicodedata
import unittest

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HC_BIN_DIR", os.path.join(REPO, "build", "bin"))
N = int(os.environ.get("HC_TOKENIZER_DIFF_N", "5000"))

# The pre-tokenizer regexes of the real models (docs/tokenizer.md has sources).
CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
          r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
          r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = ["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<s>", "</s>"]
# Added after training: every option, overlapping prefixes for leftmost-longest.
EXTRA_TOKENS = [
    AddedToken("<|start|>", special=True, normalized=False),
    AddedToken("[LS]", special=True, lstrip=True, normalized=False),
    AddedToken("[RS]", special=False, rstrip=True, normalized=False),
    AddedToken("[BOTH]", special=False, lstrip=True, rstrip=True, normalized=False),
    AddedToken("word", special=False, single_word=True, normalized=False),
    AddedToken("<tool_call>", special=False, normalized=False),
    AddedToken("<tool", special=False, normalized=False),
    AddedToken("<|end_of", special=False, normalized=False),  # a prefix of a special token
    AddedToken("<|start_of", special=False, normalized=True),  # found in the normalized pass
    AddedToken("Ｎöl", special=False, normalized=True),
    AddedToken(" hello", special=False, normalized=True),
]
TOKEN_TEXTS = SPECIALS + ["<|start|>", "[LS]", "[RS]", "[BOTH]", "word", "<tool_call>", "<tool",
                          "Ｎöl", "Nöl", " hello", "<|end_of", "<|start_of_role"]

# Code point ranges by script, for generated text.
SCRIPTS = {
    "latin": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F)],
    "greek": [(0x391, 0x3C9)],
    "cyrillic": [(0x410, 0x44F)],
    "arabic": [(0x621, 0x64A), (0x660, 0x669)],
    "hebrew": [(0x5D0, 0x5EA)],
    "devanagari": [(0x905, 0x939), (0x93E, 0x94D), (0x966, 0x96F)],
    "thai": [(0xE01, 0xE3A), (0xE50, 0xE59)],
    "khmer": [(0x1780, 0x17D2)],
    "hangul": [(0xAC00, 0xD7A3)],
    "cjk": [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0x3000, 0x303F), (0xFF01, 0xFF5E)],
    "ethiopic": [(0x1200, 0x135A)],
    "math": [(0x2200, 0x22FF), (0x1D400, 0x1D7FF), (0x2150, 0x218B), (0x2460, 0x24FF)],
    "marks": [(0x300, 0x36F), (0x1AB0, 0x1AFF), (0x20D0, 0x20FF)],
    "spaces": [(0x9, 0xD), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x2000, 0x200D),
               (0x2028, 0x2029), (0x3000, 0x3000), (0x1680, 0x1680)],
    "symbols": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E), (0xA1, 0xBF),
                (0x2010, 0x2027), (0x20A0, 0x20BF), (0x2190, 0x21FF)],
    "rare": [(0x10000, 0x1FFFF), (0x20000, 0x2FFFF), (0xE000, 0xF8FF), (0xE0000, 0xE007F),
             (0x40000, 0x4FFFF)],
    "casefold": [(0x17F, 0x17F), (0x212A, 0x212B), (0x130, 0x131), (0x1E9E, 0x1E9E)],
}
EMOJI = ["\U0001F600", "\U0001F680", "\U0001F999", "\u2764\ufe0f", "\U0001F44D\U0001F3FD",
         "\U0001F469\u200d\U0001F4BB", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
         "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F1EB\U0001F1F7", "\u0031\ufe0f\u20e3",
         "\U0001F636\u200d\U0001F32B\ufe0f", "\u2705", "\U0001F9D1\U0001F3FF\u200d\U0001F9B2"]
WORDS = ["the", "The", "THE", "quick", "fox", "naïve", "café", "Straße", "İstanbul", "ﬁle",
         "résumé", "über", "日本語", "中文", "한국어", "Привет", "مرحبا", "שלום", "नमस्ते",
         "ไทย", "ΑΒΓ", "hello", "Hello", "HELLO", "camelCase", "snake_case", "x86_64", "don",
         "word", "words", "sword", "Nöl", "ＡＢＣ", "①②③", "½", "Ⅻ", "²³"]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll",
                "'LL", "'lL", "'d", "'D", "’s", "'ſ", "'K", "'x"]
CODE = ["def f(x):\n    return x**2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "if x != None and y >= 3: pass", "#include <stdio.h>\r\n", "a->b && c || !d",
        "SELECT * FROM t WHERE id = 42;", "let v: Vec<u8> = vec![0xFF; 16];",
        "https://example.com/path?q=1&r=2#frag", "C:\\Users\\me\\file.txt", "$x = @y % 3;",
        "// comment /* block */", "x = [1, 2, 3]  # list", "\"quoted\" 'single' `back`"]


# Debian's Oniguruma 6.9.8 has the Unicode 14.0 tables; the one built into the
# `tokenizers` wheel is newer, so characters assigned in Unicode 15.0 or later
# (e.g. U+1E4F8, a Nag Mundari digit) fall in different classes there
# (docs/tokenizer.md). Generated text keeps to characters both agree on:
# assigned in Unicode 14 (Python 3.11's tables), or unassigned in any version
# we may meet (planes 3-13, which hold no characters yet).
UCD = (unicodedata if tuple(map(int, unicodedata.unidata_version.split("."))) <= (14, 0, 0)
       else unicodedata.ucd_3_2_0)


def random_char(rng):
    while True:
        ranges = SCRIPTS[rng.choice(list(SCRIPTS))]
        lo, hi = rng.choice(ranges)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if UCD.category(chr(cp)) != "Cn" or 0x30000 <= cp < 0xE0000:
            return chr(cp)


# NFC/NFKC: ours is ICU 72 (Unicode 15); `tokenizers` uses the tables of the
# unicode-normalization-alignments crate, which are older: a combining mark
# or decomposable character assigned since then is a plain starter there
# (e.g. U+1ACD is not reordered). Text for pipelines with a Unicode normalizer
# keeps to characters whose normalization no version since 3.2 changes.
def normalization_stable(text):
    return "".join(
        c if unicodedata.ucd_3_2_0.category(c) != "Cn"
        or (unicodedata.combining(c) == 0 and unicodedata.decomposition(c) == "") else "x"
        for c in text)


def piece(rng):
    kind = rng.randrange(14)
    if kind == 0:
        return "".join(random_char(rng) for _ in range(rng.randint(1, 12)))
    if kind == 1:
        return rng.choice(EMOJI) * rng.randint(1, 3)
    if kind == 2:
        return "".join(rng.choice([" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000"])
                       for _ in range(rng.randint(1, 8)))
    if kind == 3:
        return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if kind == 4:
        return rng.choice(CODE)
    if kind == 5:
        return rng.choice(WORDS) + rng.choice(CONTRACTIONS)
    if kind == 6:
        return rng.choice(TOKEN_TEXTS)
    if kind == 7:
        return " " * rng.randint(0, 3) + rng.choice(TOKEN_TEXTS) + " " * rng.randint(0, 3)
    if kind == 8:  # a word with combining marks
        return "".join(c + chr(rng.randint(0x300, 0x36F)) * rng.randint(0, 2)
                       for c in rng.choice(WORDS))
    if kind == 9:
        return rng.choice(["١٢٣", "๑๒๓", "०१२", "１２３", "3.14", "1,000,000", "0x1F", "1e-9"])
    return rng.choice(WORDS)


def random_text(rng):
    n = rng.choice([0, 1, 2, 3, 5, 8, 13, 30])
    seps = ["", " ", " ", "\n", "  ", "\t"]
    return "".join(piece(rng) + rng.choice(seps) for _ in range(n))


def corpus(seed, n=1500):
    rng = random.Random(seed)
    base = ("The quick brown fox jumps over the lazy dog. It's a test; we'll see what they've "
            "said. Numbers 12345 and 2024-06-01. café naïve résumé über Straße. ")
    return [base] * 20 + [random_text(rng) for _ in range(n)]


def byte_level(add_prefix_space=False, use_regex=True):
    return pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=use_regex)


def pipelines():
    """(name, normalizer, pre_tokenizer, post_processor) of each pipeline."""
    split = lambda pattern, behavior="isolated", invert=False: pre_tokenizers.Split(
        Regex(pattern), behavior=behavior, invert=invert)
    bos = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 3)])
    bos_eos = processors.TemplateProcessing(single="<s> $A </s>",
                                            special_tokens=[("<s>", 3), ("</s>", 4)])
    return [
        ("gpt2", None, byte_level(), processors.ByteLevel(trim_offsets=False)),
        ("gpt2_prefix_space", None, byte_level(add_prefix_space=True), None),
        ("granite4", None, pre_tokenizers.Sequence([split(CL100K), byte_level(use_regex=False)]),
         processors.ByteLevel(trim_offsets=False)),
        ("nemotron_h", None,
         pre_tokenizers.Sequence([split(TEKKEN), byte_level(use_regex=False)]), bos),
        ("normalized",
         normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r" {2,}"), " "),
                               normalizers.Replace("\t", "    "), normalizers.Prepend("\u2581")]),
         pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level()]),
         processors.Sequence([processors.ByteLevel(), bos_eos])),
        ("behaviors", normalizers.NFC(),
         pre_tokenizers.Sequence([
             pre_tokenizers.Split("-", behavior="merged_with_next"),
             split(r"[,.;:!?]", "merged_with_previous"),
             split(r"\s+", "removed"),
             split(r"\p{N}+", "contiguous"),
             split(r"[\p{Lu}]", "isolated", invert=True),
             pre_tokenizers.Digits(individual_digits=False),
             byte_level(add_prefix_space=True, use_regex=False)]),
         None),
    ]


def build(normalizer, pre_tokenizer, post_processor, texts, vocab_size=2000):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if post_processor is not None:
        tok.post_processor = post_processor
    tok.add_tokens(EXTRA_TOKENS)
    return tok


def expected(tok, texts, id_lists):
    tok.encode_special_tokens = False
    ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    post = [e.ids for e in tok.encode_batch(texts, add_special_tokens=True)]
    tok.encode_special_tokens = True
    plain = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    tok.encode_special_tokens = False
    decoded = tok.decode_batch(ids + id_lists, skip_special_tokens=False)
    decoded_skip = tok.decode_batch(ids + id_lists, skip_special_tokens=True)
    out = [{"ids": ids[k], "ids_plain": plain[k], "ids_post": post[k]} for k in range(len(texts))]
    out += [{} for _ in id_lists]
    for k, o in enumerate(out):
        o["decoded"], o["decoded_skip"] = decoded[k], decoded_skip[k]
    return out


def ours(path, texts, id_lists):
    lines = [json.dumps({"text": s}) for s in texts] + [json.dumps({"ids": i}) for i in id_lists]
    proc = subprocess.run([os.path.join(BIN, "hc-tokenize"), "--batch", "--tokenizer_json", path],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"hc-tokenize failed: {proc.stderr}")
    # split("\n"), not splitlines(): the JSON may hold a raw U+2028 or U+0085.
    return [json.loads(line) for line in proc.stdout.split("\n") if line]


class TokenizerDiffTest(unittest.TestCase):
    def check(self, name, path, seed, unicode_normalizer=False):
        tok = Tokenizer.from_file(path)
        rng = random.Random(seed)
        texts = [random_text(rng) for _ in range(N)]
        if unicode_normalizer:
            texts = [normalization_stable(t) for t in texts]
        size = tok.get_vocab_size(with_added_tokens=True)
        id_lists = [[rng.randrange(size) for _ in range(rng.randint(1, 12))] for _ in range(N // 5)]
        want = expected(tok, texts, id_lists)
        got = ours(path, texts, id_lists)
        self.assertEqual(len(got), len(want), name)
        inputs = texts + id_lists
        mismatches = [(inputs[k], w, g) for k, (w, g) in enumerate(zip(want, got)) if w != g]
        for inp, w, g in mismatches[:5]:
            diff = {k: (w[k], g.get(k)) for k in w if w[k] != g.get(k)}
            print(f"\n{name}: input {inp!r}\n  expected vs ours: {diff}")
        self.assertEqual(len(mismatches), 0,
                         f"{name}: {len(mismatches)} of {len(inputs)} inputs differ")

    def test_pipelines_trained_by_tokenizers(self):
        texts = corpus(seed=7)
        with tempfile.TemporaryDirectory() as tmp:
            for k, (name, norm, pre, post) in enumerate(pipelines()):
                with self.subTest(pipeline=name):
                    path = os.path.join(tmp, f"{name}.json")
                    build(norm, pre, post, texts).save(path)
                    self.check(name, path, seed=100 + k, unicode_normalizer=norm is not None)

    def test_synthetic_checkpoint_tokenizers(self):
        """Vocab and merges from our own trainer: the synthetic tokenizers of
        every pre-tokenizer style (hc-tokenize --write_synthetic)."""
        with tempfile.TemporaryDirectory() as tmp:
            for k, style in enumerate(["gpt2", "granite4", "nemotron_h"]):
                with self.subTest(style=style):
                    out = os.path.join(tmp, style)
                    subprocess.run([os.path.join(BIN, "hc-tokenize"), "--write_synthetic", out,
                                    "--preset", "tiny", "--style", style],
                                   check=True, capture_output=True, timeout=300)
                    # Our added tokens too, appended to the synthetic file.
                    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
                    tok.add_tokens(EXTRA_TOKENS)
                    path = os.path.join(tmp, f"{style}.json")
                    tok.save(path)
                    self.check(f"synthetic {style}", path, seed=200 + k)


if __name__ == "__main__":
    unittest.main()
