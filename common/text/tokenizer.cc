#include "common/text/tokenizer.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace hc {
namespace {

// ---- Character classes of the GPT-2 split --------------------------------------

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

struct Range {
  uint32_t lo, hi;  // inclusive
};

constexpr Range kSpaceRanges[] = {
    {0x09, 0x0D},     {0x20, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},     {0x1680, 0x1680},
    {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}};

constexpr Range kNumberRanges[] = {
    {0x30, 0x39},       {0xB2, 0xB3},      {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},
    {0x6F0, 0x6F9},     {0x7C0, 0x7C9},    {0x966, 0x96F},   {0x9E6, 0x9EF},   {0xA66, 0xA6F},
    {0xAE6, 0xAEF},     {0xB66, 0xB6F},    {0xBE6, 0xBF2},   {0xC66, 0xC6F},   {0xCE6, 0xCEF},
    {0xD66, 0xD78},     {0xE50, 0xE59},    {0xED0, 0xED9},   {0xF20, 0xF33},   {0x1040, 0x1049},
    {0x17E0, 0x17E9},   {0x1810, 0x1819},  {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182},   {0x2185, 0x2189},  {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793},
    {0x3007, 0x3007},   {0x3021, 0x3029},  {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229},
    {0x3248, 0x324F},   {0x3251, 0x325F},  {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xFF10, 0xFF19},
    {0x1D7CE, 0x1D7FF}, {0x1F100, 0x1F10C}};

// Punctuation, symbols, marks, controls and format characters (neither
// letters, numbers nor whitespace). Sorted, non-overlapping.
constexpr Range kOtherRanges[] = {
    {0x00, 0x08},       {0x0E, 0x1F},       {0x21, 0x2F},       {0x3A, 0x40},
    {0x5B, 0x60},       {0x7B, 0x84},       {0x86, 0x9F},       {0xA1, 0xA9},
    {0xAB, 0xB1},       {0xB4, 0xB4},       {0xB6, 0xB8},       {0xBB, 0xBB},
    {0xBF, 0xBF},       {0xD7, 0xD7},       {0xF7, 0xF7},       {0x2C2, 0x2C5},
    {0x2D2, 0x2DF},     {0x2E5, 0x2EB},     {0x2ED, 0x2ED},     {0x2EF, 0x36F},
    {0x37E, 0x37E},     {0x384, 0x385},     {0x387, 0x387},     {0x483, 0x489},
    {0x55A, 0x55F},     {0x589, 0x58A},     {0x591, 0x5C7},     {0x5F3, 0x5F4},
    {0x600, 0x60F},     {0x61B, 0x61F},     {0x64B, 0x65F},     {0x66A, 0x66D},
    {0x670, 0x670},     {0x6D4, 0x6D4},     {0x6D6, 0x6E4},     {0x6E7, 0x6ED},
    {0x900, 0x903},     {0x93A, 0x93C},     {0x93E, 0x94F},     {0x951, 0x957},
    {0x962, 0x965},     {0x970, 0x970},     {0xE31, 0xE31},     {0xE34, 0xE3A},
    {0xE3F, 0xE3F},     {0xE47, 0xE4F},     {0xE5A, 0xE5B},     {0x200B, 0x2027},
    {0x202A, 0x202E},   {0x2030, 0x205E},   {0x2060, 0x206F},   {0x207A, 0x207E},
    {0x208A, 0x208E},   {0x20A0, 0x20FF},   {0x2100, 0x2101},   {0x2103, 0x2106},
    {0x2108, 0x2109},   {0x2114, 0x2114},   {0x2116, 0x2118},   {0x211E, 0x2123},
    {0x2125, 0x2125},   {0x2127, 0x2127},   {0x2129, 0x2129},   {0x212E, 0x212E},
    {0x213A, 0x213B},   {0x2140, 0x2144},   {0x214A, 0x214D},   {0x214F, 0x214F},
    {0x218A, 0x218B},   {0x2190, 0x245F},   {0x249C, 0x24E9},   {0x2500, 0x2775},
    {0x2794, 0x2BFF},   {0x2CE5, 0x2CEA},   {0x2CF9, 0x2CFC},   {0x2CFE, 0x2CFF},
    {0x2E00, 0x2FFF},   {0x3001, 0x3004},   {0x3008, 0x3020},   {0x302A, 0x3030},
    {0x3036, 0x3037},   {0x303D, 0x303F},   {0x3099, 0x309C},   {0x30A0, 0x30A0},
    {0x30FB, 0x30FB},   {0x3190, 0x3191},   {0x3196, 0x319F},   {0x31C0, 0x31E3},
    {0x3200, 0x321E},   {0x322A, 0x3247},   {0x3250, 0x3250},   {0x3260, 0x327F},
    {0x328A, 0x32B0},   {0x32C0, 0x33FF},   {0x4DC0, 0x4DFF},   {0xA490, 0xA4C6},
    {0xD800, 0xF8FF},   {0xFB29, 0xFB29},   {0xFD3E, 0xFD3F},   {0xFE00, 0xFE6F},
    {0xFEFF, 0xFEFF},   {0xFF01, 0xFF0F},   {0xFF1A, 0xFF20},   {0xFF3B, 0xFF40},
    {0xFF5B, 0xFF65},   {0xFFE0, 0xFFEE},   {0xFFF9, 0xFFFD},   {0x1F000, 0x1F0FF},
    {0x1F10D, 0x1FAFF}, {0xE0000, 0xE007F}, {0xE0100, 0xE01EF}, {0xF0000, 0x10FFFF}};

template <size_t N>
bool InRanges(const Range (&ranges)[N], uint32_t cp) {
  const Range* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                     [](uint32_t v, const Range& r) { return v < r.lo; });
  return it != std::begin(ranges) && cp <= (it - 1)->hi;
}

CharClass Classify(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (InRanges(kSpaceRanges, cp)) return CharClass::kSpace;
  if (InRanges(kNumberRanges, cp)) return CharClass::kNumber;
  if (InRanges(kOtherRanges, cp)) return CharClass::kOther;
  return CharClass::kLetter;
}

struct CodePoint {
  size_t offset;
  uint32_t cp;  // 0xFFFFFFFF for an invalid byte
  CharClass cls;
};

// ---- Byte-level map -------------------------------------------------------------

struct ByteMaps {
  std::string byte_to_utf8[256];
  absl::flat_hash_map<uint32_t, uint8_t> cp_to_byte;
  ByteMaps() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + n++;
      utf8::Append(cp, &byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMaps& Maps() {
  static const ByteMaps* maps = new ByteMaps();
  return *maps;
}

}  // namespace

std::vector<std::string_view> SplitGpt2(std::string_view text) {
  std::vector<CodePoint> cps;
  cps.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    size_t len = utf8::Decode(text, i, &cp);
    if (len == 0) {
      cps.push_back({i, 0xFFFFFFFFu, CharClass::kOther});
      ++i;
      continue;
    }
    cps.push_back({i, cp, Classify(cp)});
    i += len;
  }
  const size_t n = cps.size();
  auto cp_at = [&](size_t k) { return k < n ? cps[k].cp : 0u; };
  auto off = [&](size_t k) { return k < n ? cps[k].offset : text.size(); };
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    // 's 't 're 've 'm 'll 'd
    if (cps[i].cp == '\'' && i + 1 < n) {
      const uint32_t c1 = cp_at(i + 1), c2 = cp_at(i + 2);
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        end = i + 2;
      } else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        end = i + 3;
      }
    }
    if (end == i) {
      size_t start = i;
      if (cps[i].cp == ' ' && i + 1 < n && cps[i + 1].cls != CharClass::kSpace) start = i + 1;
      const CharClass cls = cps[start].cls;
      if (cls != CharClass::kSpace) {
        // ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+`
        end = start + 1;
        while (end < n && cps[end].cls == cls) ++end;
      } else {
        // `\s+(?!\S)` then `\s+`
        size_t r = i;
        while (r < n && cps[r].cls == CharClass::kSpace) ++r;
        end = (r < n && r - i >= 2) ? r - 1 : r;
      }
    }
    out.push_back(text.substr(off(i), off(end) - off(i)));
    i = end;
  }
  return out;
}

const std::string& ByteToUnicode(uint8_t byte) { return Maps().byte_to_utf8[byte]; }

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out.append(Maps().byte_to_utf8[b]);
  return out;
}

std::string ByteLevelDecode(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  const auto& map = Maps().cp_to_byte;
  for (size_t i = 0; i < token.size();) {
    uint32_t cp;
    size_t len = utf8::Decode(token, i, &cp);
    if (len == 0) {
      out.push_back(token[i]);
      ++i;
      continue;
    }
    auto it = map.find(cp);
    if (it != map.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      out.append(token.substr(i, len));
    }
    i += len;
  }
  return out;
}

// ---- Loading --------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  HC_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto tok = FromJson(text);
  if (!tok.ok()) {
    return absl::Status(tok.status().code(), absl::StrCat(path, ": ", tok.status().message()));
  }
  return tok;
}

namespace {
constexpr int64_t kMaxId = 1 << 24;
}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text) {
  HC_ASSIGN_OR_RETURN(json::Value root, json::Parse(json_text));
  if (!root.is_object()) return absl::InvalidArgumentError("tokenizer.json: not a JSON object");
  std::unique_ptr<Tokenizer> tok(new Tokenizer());

  if (const json::Value* norm = root.Find("normalizer"); norm && !norm->is_null()) {
    return absl::UnimplementedError("tokenizer.json: normalizers are not supported");
  }
  HC_RETURN_IF_ERROR(tok->LoadPreTokenizer(root));
  if (const json::Value* dec = root.Find("decoder"); dec && !dec->is_null()) {
    const json::Value* type = dec->Find("type");
    if (!type || !type->is_string() || type->AsString() != "ByteLevel") {
      return absl::UnimplementedError("tokenizer.json: decoder must be ByteLevel");
    }
  }

  const json::Value* model = root.Find("model");
  if (!model || !model->is_object()) return absl::InvalidArgumentError("tokenizer.json: no model");
  HC_RETURN_IF_ERROR(tok->LoadModelOptions(*model));
  HC_RETURN_IF_ERROR(tok->LoadVocab(*model));
  HC_RETURN_IF_ERROR(tok->LoadMerges(*model));
  HC_RETURN_IF_ERROR(tok->LoadAddedTokens(root));
  tok->IndexTokens();
  return tok;
}

absl::Status Tokenizer::LoadPreTokenizer(const json::Value& root) {
  const json::Value* pre = root.Find("pre_tokenizer");
  if (!pre || !pre->is_object()) {
    return absl::UnimplementedError("tokenizer.json: missing ByteLevel pre_tokenizer");
  }
  const json::Value* type = pre->Find("type");
  if (type && type->is_string() && type->AsString() == "Sequence") {
    const json::Value* list = pre->Find("pretokenizers");
    if (!list || !list->is_array() || list->AsArray().size() != 1) {
      return absl::UnimplementedError(
          "tokenizer.json: only a Sequence holding a single ByteLevel pre-tokenizer is "
          "supported");
    }
    pre = &list->AsArray()[0];
    type = pre->Find("type");
  }
  if (!type || !type->is_string() || type->AsString() != "ByteLevel") {
    return absl::UnimplementedError(
        "tokenizer.json: pre_tokenizer must be ByteLevel (byte-level BPE)");
  }
  if (const json::Value* r = pre->Find("use_regex"); r && r->is_bool() && !r->AsBool()) {
    return absl::UnimplementedError("tokenizer.json: ByteLevel with use_regex=false");
  }
  if (const json::Value* p = pre->Find("add_prefix_space"); p && p->is_bool()) {
    add_prefix_space_ = p->AsBool();
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::LoadModelOptions(const json::Value& model) {
  if (const json::Value* type = model.Find("type");
      type && (!type->is_string() || type->AsString() != "BPE")) {
    return absl::UnimplementedError("tokenizer.json: model.type must be BPE");
  }
  if (const json::Value* d = model.Find("dropout"); d && !d->is_null()) {
    return absl::UnimplementedError("tokenizer.json: BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::Value* v = model.Find(key);
    if (v && !v->is_null() && !(v->is_string() && v->AsString().empty())) {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer.json: BPE ", key, " is not supported"));
    }
  }
  if (const json::Value* v = model.Find("byte_fallback"); v && v->is_bool() && v->AsBool()) {
    return absl::UnimplementedError("tokenizer.json: BPE byte_fallback is not supported");
  }
  if (const json::Value* v = model.Find("ignore_merges"); v && v->is_bool()) {
    ignore_merges_ = v->AsBool();
  }
  return absl::OkStatus();
}

void Tokenizer::EnsureId(TokenId id) {
  if (static_cast<size_t>(id) >= id_to_bytes_.size()) {
    id_to_bytes_.resize(id + 1);
    has_id_.resize(id + 1, false);
    is_special_.resize(id + 1, false);
  }
}

absl::Status Tokenizer::LoadVocab(const json::Value& model) {
  const json::Value* vocab = model.Find("vocab");
  if (!vocab || !vocab->is_object()) {
    return absl::InvalidArgumentError("tokenizer.json: model.vocab must be an object");
  }
  for (const auto& [token, idv] : vocab->AsObject()) {
    if (!idv.is_int() || idv.AsInt64() < 0 || idv.AsInt64() >= kMaxId) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: vocab entry \"", token, "\" has an invalid id"));
    }
    const TokenId id = static_cast<TokenId>(idv.AsInt64());
    EnsureId(id);
    id_to_bytes_[id] = ByteLevelDecode(token);
    has_id_[id] = true;
    vocab_[token] = id;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(ByteToUnicode(static_cast<uint8_t>(b)));
    if (it == vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: vocab lacks the byte-level token for byte ", b));
    }
    byte_ids_[b] = it->second;
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::LoadMerges(const json::Value& model) {
  const json::Value* merges = model.Find("merges");
  if (!merges || !merges->is_array()) {
    return absl::InvalidArgumentError("tokenizer.json: model.merges must be an array");
  }
  int rank = 0;
  for (const json::Value& m : merges->AsArray()) {
    std::string left, right;
    if (m.is_string()) {
      const std::string& s = m.AsString();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: bad merge \"", s, "\""));
      }
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (m.is_array() && m.AsArray().size() == 2 && m.AsArray()[0].is_string() &&
               m.AsArray()[1].is_string()) {
      left = m.AsArray()[0].AsString();
      right = m.AsArray()[1].AsString();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: merge #", rank, " is neither \"a b\" nor [a, b]"));
    }
    auto l = vocab_.find(left), r = vocab_.find(right), merged = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || merged == vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: merge \"", left, " ", right,
                                                     "\" refers to tokens not in the vocab"));
    }
    merges_.try_emplace(PairKey(l->second, r->second), Merge{rank, merged->second});
    ++rank;
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::LoadAddedTokens(const json::Value& root) {
  const json::Value* added = root.Find("added_tokens");
  if (!added || added->is_null()) return absl::OkStatus();
  if (!added->is_array()) {
    return absl::InvalidArgumentError("tokenizer.json: added_tokens must be an array");
  }
  for (const json::Value& a : added->AsArray()) {
    const json::Value* id = a.Find("id");
    const json::Value* content = a.Find("content");
    if (!id || !id->is_int() || id->AsInt64() < 0 || id->AsInt64() >= kMaxId || !content ||
        !content->is_string() || content->AsString().empty()) {
      return absl::InvalidArgumentError("tokenizer.json: added token without a valid id/content");
    }
    AddedToken t;
    t.id = static_cast<TokenId>(id->AsInt64());
    t.content = content->AsString();
    const json::Value* special = a.Find("special");
    t.special = special && special->is_bool() && special->AsBool();
    EnsureId(t.id);
    id_to_bytes_[t.id] = t.content;
    has_id_[t.id] = true;
    is_special_[t.id] = t.special;
    added_.push_back(std::move(t));
  }
  return absl::OkStatus();
}

void Tokenizer::IndexTokens() {
  for (size_t k = 0; k < added_.size(); ++k) {
    added_by_first_byte_[static_cast<unsigned char>(added_[k].content[0])].push_back(
        static_cast<int>(k));
  }
  for (auto& list : added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
      return added_[a].content.size() > added_[b].content.size();
    });
  }
  for (const std::string& bytes : id_to_bytes_) {
    max_token_bytes_ = std::max(max_token_bytes_, bytes.size());
  }
}

// ---- Encoding -------------------------------------------------------------------

std::vector<TokenId> Tokenizer::Encode(std::string_view text, bool allow_special) const {
  if (allow_special) {
    const std::pair<size_t, size_t> all[] = {{0, text.size()}};
    return EncodeWithSpecialRanges(text, all);
  }
  return EncodeWithSpecialRanges(text, {});
}

std::vector<TokenId> Tokenizer::EncodeWithSpecialRanges(
    std::string_view text, absl::Span<const std::pair<size_t, size_t>> special_ranges,
    const std::atomic<bool>* cancel) const {
  std::vector<TokenId> out;
  size_t seg_start = 0;
  size_t range = 0;  // first range that does not end before i
  for (size_t i = 0; i < text.size();) {
    while (range < special_ranges.size() && special_ranges[range].second <= i) ++range;
    const bool special_ok = range < special_ranges.size() && special_ranges[range].first <= i;
    const AddedToken* match = nullptr;
    for (int k : added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = added_[k];
      if (t.special && !special_ok) continue;
      if (text.substr(i, t.content.size()) == t.content) {
        match = &t;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > seg_start) EncodeOrdinary(text.substr(seg_start, i - seg_start), &out, cancel);
    out.push_back(match->id);
    i += match->content.size();
    seg_start = i;
  }
  if (seg_start < text.size()) EncodeOrdinary(text.substr(seg_start), &out, cancel);
  return out;
}

void Tokenizer::EncodeOrdinary(std::string_view text, std::vector<TokenId>* out,
                               const std::atomic<bool>* cancel) const {
  std::string prefixed;
  if (add_prefix_space_ && !text.empty() && text[0] != ' ') {
    prefixed = " ";
    prefixed.append(text);
    text = prefixed;
  }
  for (std::string_view word : SplitGpt2(text)) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return;
    EncodeWord(word, out);
  }
}

// BPE over one pre-tokenized word, as the `tokenizers` library does it: the
// adjacent pairs that have a merge sit in a min-heap by (rank, position); the
// best is merged, its two neighbour pairs are pushed, and entries made stale
// by an earlier merge are skipped when popped. O(n log n) in the word's bytes
// (a merge at every step rescans nothing), 12 bytes per byte of the word plus
// 12 per queued pair.
void Tokenizer::EncodeWord(std::string_view word, std::vector<TokenId>* out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(ByteLevelEncode(word));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const int n = static_cast<int>(word.size());
  if (n == 1) {
    out->push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  // Symbols as a doubly linked list over the word's bytes; a merged-away
  // symbol gets id -1.
  struct Symbol {
    TokenId id;
    int32_t prev, next;
  };
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    sym[i] = Symbol{byte_ids_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  struct Candidate {
    int32_t rank, pos;
    TokenId merged;
    // std::priority_queue is a max-heap: "less" means later rank, then later
    // position.
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> heap;
  const auto push = [&](int pos) {
    const int next = sym[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(sym[pos].id, sym[next].id));
    if (it == merges_.end()) return;
    heap.push_back(Candidate{it->second.rank, pos, it->second.merged});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = sym[c.pos];
    if (left.id < 0 || left.next < 0) continue;  // merged away, or now last
    const int right_pos = left.next;
    // Stale when the pair at this position changed since it was queued.
    auto it = merges_.find(PairKey(left.id, sym[right_pos].id));
    if (it == merges_.end() || it->second.merged != c.merged) continue;
    left.id = c.merged;
    left.next = sym[right_pos].next;
    sym[right_pos].id = -1;
    if (left.next >= 0) sym[left.next].prev = c.pos;
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

// ---- Decoding -------------------------------------------------------------------

std::string_view Tokenizer::TokenBytes(TokenId id) const {
  if (!IsValidId(id)) return {};
  return id_to_bytes_[id];
}

std::optional<TokenId> Tokenizer::TokenToId(std::string_view token) const {
  for (const AddedToken& t : added_) {
    if (t.content == token) return t.id;
  }
  auto it = vocab_.find(absl::string_view(token.data(), token.size()));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::IsSpecial(TokenId id) const { return IsValidId(id) && is_special_[id]; }

std::string Tokenizer::Decode(absl::Span<const TokenId> ids, bool skip_special) const {
  std::string bytes;
  for (TokenId id : ids) {
    if (skip_special && IsSpecial(id)) continue;
    bytes.append(TokenBytes(id));
  }
  return utf8::Lossy(bytes);
}

std::string StreamingDecoder::Push(TokenId id) {
  if (skip_special_ && tokenizer_->IsSpecial(id)) return {};
  pending_.append(tokenizer_->TokenBytes(id));
  const size_t hold = utf8::IncompleteSuffixLength(pending_);
  std::string out = utf8::Lossy(std::string_view(pending_).substr(0, pending_.size() - hold));
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StreamingDecoder::Flush() {
  std::string out = utf8::Lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace hc
