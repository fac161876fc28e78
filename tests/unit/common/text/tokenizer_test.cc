#include "common/text/tokenizer.h"

#include <dlfcn.h>
#include <regex.h>

#include <climits>
#include <random>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "common/json.h"
#include "common/text/bpe_trainer.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kCorpus =
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.\n"
    "It's a sunny day, isn't it? We'll walk to the river and they've said they'd come.\n"
    "Numbers like 12345 and 2024 appear in the text, as do symbols: $100, 50% and #tags!\n"
    "Caching the state of a conversation makes the next turn fast. The next turn reuses it.\n"
    "the the the then there these those other another brother mother father together\n";

const std::vector<std::string> kSpecials = {"<|end_of_text|>", "<|pad|>", "<|start_of_role|>",
                                            "<|end_of_role|>"};

std::unique_ptr<Tokenizer> MakeTokenizer(int vocab_size = 400) {
  BpeTrainerOptions opt;
  opt.vocab_size = vocab_size;
  opt.special_tokens = kSpecials;
  auto tok = Tokenizer::FromJson(BpeTokenizerJson(TrainBpe(kCorpus, opt)));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

std::vector<std::string> Split(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : SplitGpt2(s)) out.emplace_back(p);
  return out;
}

TEST(SplitGpt2Test, FollowsTheGpt2Regex) {
  EXPECT_THAT(Split("Hello world's  end\n\nok"),
              ElementsAre("Hello", " world", "'s", " ", " end", "\n", "\n", "ok"));
  EXPECT_THAT(Split("they'll x2 42!? (a)"),
              ElementsAre("they", "'ll", " x", "2", " 42", "!?", " (", "a", ")"));
  EXPECT_THAT(Split("a   "), ElementsAre("a", "   "));
  EXPECT_THAT(Split(" \tb"), ElementsAre(" ", "\t", "b"));
  EXPECT_THAT(Split("caf\xC3\xA9 \xF0\x9F\x98\x80!"),
              ElementsAre("caf\xC3\xA9", " \xF0\x9F\x98\x80!"));
  EXPECT_THAT(Split("\xE4\xB8\xAD\xE6\x96\x87\xE3\x80\x82"),
              ElementsAre("\xE4\xB8\xAD\xE6\x96\x87", "\xE3\x80\x82"));
  EXPECT_TRUE(Split("").empty());
}

// The hand-written split this replaced had an approximate Unicode table and
// split 5,327 of 56,234 assigned non-ASCII characters differently from
// `tokenizers` (symbols, marks, numbers outside its table); these are some,
// with the pieces `tokenizers` 0.23.3's ByteLevel pre-tokenizer gives.
TEST(SplitGpt2Test, ClassifiesCharactersOutsideTheOldTableAsTokenizersDoes) {
  EXPECT_THAT(Split("a\u0375b"), ElementsAre("a", "\u0375", "b"));  // Sk
  EXPECT_THAT(Split("x\u0610y"), ElementsAre("x", "\u0610", "y"));  // Mn
  EXPECT_THAT(Split("v\u0903w"), ElementsAre("v", "\u0903", "w"));  // Mc
  EXPECT_THAT(Split("k\u058Fm"), ElementsAre("k", "\u058F", "m"));  // Sc
  EXPECT_THAT(Split("\u2E80z"), ElementsAre("\u2E80", "z"));        // So
  EXPECT_THAT(Split("\u2160\u2161 \u00BD"), ElementsAre("\u2160\u2161", " \u00BD"));
}

// Bytes that are not UTF-8 never reach the regex: each is a piece.
TEST(SplitGpt2Test, InvalidBytesArePiecesOfTheirOwn) {
  EXPECT_THAT(Split("ab\xFF\xC3 cd"), ElementsAre("ab", "\xFF", "\xC3", " cd"));
}

TEST(SplitGpt2Test, PiecesConcatenateToInput) {
  std::mt19937_64 rng(3);
  const char* atoms[] = {"a",  "Z",       " ", "  ",       "\n",           "'",
                         "'s", "9",       ".", "\xC3\xA9", "\xE2\x80\x94", "\xF0\x9F\x8E\x89",
                         "\t", "\xC2\xA0"};
  for (int i = 0; i < 500; ++i) {
    std::string s;
    for (int k = 0; k < 20; ++k) s += atoms[rng() % 14];
    std::string joined;
    for (auto p : SplitGpt2(s)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, s);
  }
}

TEST(ByteLevelTest, MapIsReversibleAndPrintable) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(all)), all);
  EXPECT_EQ(ByteToUnicode(' '), "\xC4\xA0");  // U+0120 'Ġ'
  EXPECT_EQ(ByteToUnicode('a'), "a");
  EXPECT_EQ(ByteToUnicode('\n'), "\xC4\x8A");  // U+010A 'Ċ'
}

// Linking Oniguruma must not replace glibc's POSIX regex functions in the
// process (Debian's libonig exports regcomp & co. under the plain names, with
// a different regex_t): before libc was named ahead of libonig, server_test's
// death tests failed to match their (empty) message regex.
TEST(TokenizerTest, PosixRegexStaysGlibcs) {
  Dl_info info;
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&regcomp), &info), 0);
  ASSERT_NE(info.dli_fname, nullptr);
  EXPECT_THAT(std::string(info.dli_fname), HasSubstr("libc.so"));
  regex_t re;
  ASSERT_EQ(regcomp(&re, "a+b", REG_EXTENDED | REG_NOSUB), 0);
  EXPECT_EQ(regexec(&re, "xaab", 0, nullptr, 0), 0);
  EXPECT_EQ(regexec(&re, "xb", 0, nullptr, 0), REG_NOMATCH);
  regfree(&re);
}

TEST(TokenizerTest, MergesMakeFrequentWordsSingleTokens) {
  auto tok = MakeTokenizer();
  ASSERT_NE(tok, nullptr);
  const auto the = tok->Encode(" the");
  ASSERT_EQ(the.size(), 1u);
  EXPECT_EQ(tok->TokenToId("\xC4\xA0the"), the[0]);
  EXPECT_LT(tok->Encode("The quick brown fox").size(), std::string("The quick brown fox").size());
}

// The BPE word cache is shared by every thread encoding with a tokenizer:
// concurrent encodes (run under TSan by make test-tsan) give the ids a fresh
// tokenizer gives.
TEST(TokenizerTest, ConcurrentEncodesAgreeWithAFreshTokenizer) {
  auto shared = MakeTokenizer();
  ASSERT_NE(shared, nullptr);
  std::vector<std::string> texts;
  std::mt19937_64 rng(99);
  for (int i = 0; i < 64; ++i) {
    std::string t;
    for (int w = 0; w < 20; ++w) {
      t += std::string(kCorpus.substr(rng() % (kCorpus.size() - 12), 1 + rng() % 11)) + " ";
    }
    texts.push_back(t);
  }
  std::vector<std::vector<TokenId>> want;
  for (const std::string& t : texts) want.push_back(MakeTokenizer()->Encode(t));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (shared->Encode(texts[(i + k * 7) % texts.size()]) !=
              want[(i + k * 7) % texts.size()]) {
            ++mismatches[k];
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(TokenizerTest, RandomUnicodeRoundTrips) {
  auto tok = MakeTokenizer();
  ASSERT_NE(tok, nullptr);
  std::mt19937_64 rng(1234);
  const std::pair<uint32_t, uint32_t> ranges[] = {
      {0x20, 0x7E},     {0x09, 0x0D},       {0xA0, 0x24F},      {0x370, 0x3FF},   {0x400, 0x4FF},
      {0x600, 0x6FF},   {0x900, 0x97F},     {0x3000, 0x303F},   {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3},
      {0xE000, 0xF8FF}, {0x1F300, 0x1FAFF}, {0x10000, 0x10FFFF}};
  for (int i = 0; i < 400; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      const auto [lo, hi] = ranges[rng() % std::size(ranges)];
      uint32_t cp = lo + static_cast<uint32_t>(rng() % (hi - lo + 1));
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      utf8::Append(cp, &s);
    }
    const auto ids = tok->Encode(s);
    EXPECT_EQ(tok->Decode(ids), s);
    for (TokenId id : ids) EXPECT_TRUE(tok->IsValidId(id));
  }
}

// Classic BPE (repeatedly merge every occurrence of the best-ranked pair), the
// reference the heap-based merge must equal on a trained merge list (where a
// merge's result only takes part in later-ranked merges).
std::vector<TokenId> ClassicBpe(const Tokenizer& tok, std::string_view json_text,
                                std::string_view word) {
  auto doc = json::Parse(json_text);
  EXPECT_TRUE(doc.ok());
  absl::flat_hash_map<uint64_t, std::pair<int, TokenId>> merges;
  int rank = 0;
  for (const json::Value& m : doc->Find("model")->Find("merges")->AsArray()) {
    std::string left, right;
    if (m.is_string()) {
      const std::string& str = m.AsString();
      left = str.substr(0, str.find(' '));
      right = str.substr(str.find(' ') + 1);
    } else {
      left = m.AsArray()[0].AsString();
      right = m.AsArray()[1].AsString();
    }
    const uint64_t key = (uint64_t{static_cast<uint32_t>(*tok.TokenToId(left))} << 32) |
                         static_cast<uint32_t>(*tok.TokenToId(right));
    merges.try_emplace(key, rank++, *tok.TokenToId(left + right));
  }
  std::vector<TokenId> sym;
  for (unsigned char b : word) sym.push_back(*tok.TokenToId(ByteLevelEncode(std::string(1, b))));
  while (sym.size() > 1) {
    int best = INT_MAX;
    uint64_t best_key = 0;
    TokenId merged = -1;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      const uint64_t key =
          (uint64_t{static_cast<uint32_t>(sym[i])} << 32) | static_cast<uint32_t>(sym[i + 1]);
      auto it = merges.find(key);
      if (it != merges.end() && it->second.first < best) {
        best = it->second.first;
        best_key = key;
        merged = it->second.second;
      }
    }
    if (merged < 0) break;
    std::vector<TokenId> next;
    for (size_t i = 0; i < sym.size();) {
      const uint64_t key = i + 1 < sym.size() ? (uint64_t{static_cast<uint32_t>(sym[i])} << 32) |
                                                    static_cast<uint32_t>(sym[i + 1])
                                              : 0;
      if (i + 1 < sym.size() && key == best_key) {
        next.push_back(merged);
        i += 2;
      } else {
        next.push_back(sym[i++]);
      }
    }
    sym.swap(next);
  }
  return sym;
}

TEST(TokenizerTest, HeapMergeEqualsClassicBpeOnRandomAndLongWords) {
  BpeTrainerOptions opt;
  opt.vocab_size = 400;
  opt.special_tokens = kSpecials;
  const std::string json_text = BpeTokenizerJson(TrainBpe(kCorpus, opt));
  auto tok = Tokenizer::FromJson(json_text);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::mt19937_64 rng(99);
  const std::string alphabet = "thequickbrownfoxjumpsoverlazydog";
  std::vector<std::string> words = {"the", "theretherethere", std::string(3000, 'e'),
                                    std::string(1001, 't')};
  for (int i = 0; i < 300; ++i) {
    std::string w;
    const size_t n = 1 + rng() % (i < 290 ? 24 : 2000);
    for (size_t k = 0; k < n; ++k) w += alphabet[rng() % alphabet.size()];
    words.push_back(w);
  }
  for (const std::string& w : words) {
    // A single letter-only word is one pre-token: Encode runs exactly one BPE.
    EXPECT_EQ((*tok)->Encode(w, false), ClassicBpe(**tok, json_text, w)) << w.substr(0, 40);
  }
}

TEST(TokenizerTest, SpecialTokensMatchBeforePreTokenization) {
  auto tok = MakeTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string text = "<|start_of_role|>user<|end_of_role|>Hi there<|end_of_text|>\n";
  const auto ids = tok->Encode(text);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids.front(), *tok->TokenToId("<|start_of_role|>"));
  EXPECT_EQ(ids[ids.size() - 2], *tok->TokenToId("<|end_of_text|>"));
  EXPECT_TRUE(tok->IsSpecial(ids.front()));
  EXPECT_EQ(tok->Decode(ids), text);
  EXPECT_EQ(tok->Decode(ids, /*skip_special=*/true), "userHi there\n");

  // As plain text, no special ids appear, and the text still round-trips.
  const auto plain = tok->Encode(text, /*allow_special=*/false);
  for (TokenId id : plain) EXPECT_FALSE(tok->IsSpecial(id));
  EXPECT_EQ(tok->Decode(plain), text);
}

TEST(TokenizerTest, DecodeReplacesInvalidUtf8) {
  auto tok = MakeTokenizer();
  ASSERT_NE(tok, nullptr);
  // The first byte of a 2-byte sequence alone.
  const TokenId lead = *tok->TokenToId(ByteToUnicode(0xC3));
  const TokenId a = *tok->TokenToId("a");
  EXPECT_EQ(tok->Decode({lead, a}),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(tok->Decode({999999, a}), "a");  // unknown id decodes to nothing
}

TEST(StreamingDecoderTest, EmojiSplitAcrossTokensIsHeldUntilComplete) {
  auto tok = MakeTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string text = "fox \xF0\x9F\xA6\x8A runs \xE4\xB8\xAD!";  // 🦊 and 中
  const auto ids = tok->Encode(text);
  StreamingDecoder dec(tok.get());
  std::string streamed;
  int held_steps = 0;
  for (TokenId id : ids) {
    const std::string piece = dec.Push(id);
    EXPECT_TRUE(utf8::IsValid(piece)) << "emitted a partial character";
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos);
    if (piece.empty()) ++held_steps;
    streamed += piece;
  }
  streamed += dec.Flush();
  EXPECT_EQ(streamed, text);
  // The emoji is not in this vocab, so its 4 bytes arrive as 4 tokens: at
  // least 3 pushes must have returned nothing.
  EXPECT_GE(held_steps, 3);
}

TEST(StreamingDecoderTest, MatchesBatchDecodeOnRandomIds) {
  auto tok = MakeTokenizer();
  ASSERT_NE(tok, nullptr);
  std::mt19937_64 rng(99);
  for (int i = 0; i < 300; ++i) {
    std::vector<TokenId> ids;
    const int n = static_cast<int>(rng() % 30);
    for (int k = 0; k < n; ++k) ids.push_back(static_cast<TokenId>(rng() % tok->vocab_size()));
    StreamingDecoder dec(tok.get());
    std::string streamed;
    for (TokenId id : ids) {
      const std::string piece = dec.Push(id);
      EXPECT_TRUE(utf8::IsValid(piece));
      streamed += piece;
    }
    streamed += dec.Flush();
    EXPECT_EQ(streamed, tok->Decode(ids));
  }
}

TEST(TokenizerTest, RejectsUnsupportedOrBrokenFiles) {
  auto bad_json = Tokenizer::FromJson("{");
  EXPECT_EQ(bad_json.status().code(), absl::StatusCode::kInvalidArgument);
  auto wordpiece = Tokenizer::FromJson(
      R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "WordPiece", "vocab": {}}})");
  EXPECT_EQ(wordpiece.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(wordpiece.status().message(), HasSubstr("BPE"));
  auto normalizer =
      Tokenizer::FromJson(R"({"normalizer": {"type": "BertNormalizer"}, "model": {}})");
  EXPECT_EQ(normalizer.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(normalizer.status().message(), HasSubstr("normalizer BertNormalizer"));
  auto missing_bytes = Tokenizer::FromJson(
      R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  EXPECT_EQ(missing_bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing_bytes.status().message(), HasSubstr("byte"));
}

TEST(TokenizerTest, AcceptsPairFormMerges) {
  // Same model with merges written as [a, b] pairs (tokenizers >= 0.20).
  BpeTrainerOptions opt;
  opt.vocab_size = 300;
  opt.special_tokens = kSpecials;
  const BpeModel model = TrainBpe(kCorpus, opt);
  std::string j = BpeTokenizerJson(model);
  auto a = Tokenizer::FromJson(j);
  ASSERT_TRUE(a.ok());
  for (const auto& [l, r] : model.merges) {
    const std::string from = "\"" + l + " " + r + "\"";
    const std::string to = "[\"" + l + "\", \"" + r + "\"]";
    const size_t pos = j.find(from, j.find("\"merges\""));
    ASSERT_NE(pos, std::string::npos);
    j.replace(pos, from.size(), to);
  }
  auto b = Tokenizer::FromJson(j);
  ASSERT_TRUE(b.ok()) << b.status();
  const std::string text = std::string(kCorpus);
  EXPECT_EQ((*a)->Encode(text), (*b)->Encode(text));
}

TEST(TokenizerTest, CorruptedFilesFailCleanly) {
  BpeTrainerOptions opt;
  opt.vocab_size = 300;
  opt.special_tokens = kSpecials;
  const std::string good = BpeTokenizerJson(TrainBpe(kCorpus, opt));
  std::mt19937_64 rng(11);
  const char kBytes[] = "{}[]\":,0 1atn-";
  int failures = 0;
  for (int i = 0; i < 300; ++i) {
    std::string doc = good;
    const size_t pos = rng() % doc.size();
    doc[pos] = kBytes[rng() % (sizeof(kBytes) - 1)];
    auto tok = Tokenizer::FromJson(doc);  // must return, never abort
    if (!tok.ok()) {
      ++failures;
    } else {
      const std::string text = "The fox's 42 runs.";
      EXPECT_FALSE((*tok)->Decode((*tok)->Encode(text)).empty());
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(BpeTrainerTest, IsDeterministicAndRespectsVocabSize) {
  BpeTrainerOptions opt;
  opt.vocab_size = 350;
  opt.special_tokens = kSpecials;
  const BpeModel a = TrainBpe(kCorpus, opt);
  const BpeModel b = TrainBpe(kCorpus, opt);
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_LE(a.vocab.size(), 350u);
  EXPECT_EQ(a.num_special, 4);
  EXPECT_EQ(a.vocab[0], "<|end_of_text|>");
  EXPECT_EQ(BpeTokenizerJson(a), BpeTokenizerJson(b));
}

}  // namespace
}  // namespace hc
