#include "router/ledger/record_codec.h"

#include <array>
#include <cstring>

namespace hc::router {
namespace {

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

}  // namespace

uint32_t Crc32c(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void ByteWriter::U32(uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);  // the project targets little-endian hosts
  out_->append(b, 4);
}
void ByteWriter::U64(uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out_->append(b, 8);
}
void ByteWriter::Bytes(std::string_view s) {
  U32(static_cast<uint32_t>(s.size()));
  out_->append(s);
}
void ByteWriter::RawTokens(std::span<const uint32_t> tokens) {
  const size_t at = out_->size();
  out_->resize(at + tokens.size() * 4);
  if (!tokens.empty()) std::memcpy(out_->data() + at, tokens.data(), tokens.size() * 4);
}
void ByteWriter::Tokens(std::span<const uint32_t> tokens) {
  U32(static_cast<uint32_t>(tokens.size()));
  RawTokens(tokens);
}
void ByteWriter::Message(const LedgerMessage& m) {
  U8(static_cast<uint8_t>(m.role));
  U32(m.begin);
  U32(m.end);
  Bytes(m.text);
}
void ByteWriter::Messages(std::span<const LedgerMessage> ms) {
  U32(static_cast<uint32_t>(ms.size()));
  for (const LedgerMessage& m : ms) Message(m);
}
void ByteWriter::Worker(const WorkerState& w) {
  Bytes(w.worker_id);
  U64(w.round);
  U32(w.num_tokens);
  U64(w.prefix_hash);
}
void ByteWriter::Usage(const std::optional<RoundUsage>& u) {
  const RoundUsage v = u.value_or(RoundUsage{});
  U8(u.has_value() ? 1 : 0);
  U32(v.prompt_tokens);
  U32(v.cached_tokens);
  U32(v.completion_tokens);
}
void ByteWriter::Usages(std::span<const std::optional<RoundUsage>> usage) {
  U32(static_cast<uint32_t>(usage.size()));
  for (const std::optional<RoundUsage>& u : usage) Usage(u);
}

bool ByteReader::Take(size_t n, std::string_view* out) {
  if (!ok_ || in_.size() < n) return ok_ = false;
  *out = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}
bool ByteReader::U8(uint8_t* v) {
  std::string_view s;
  if (!Take(1, &s)) return false;
  *v = static_cast<uint8_t>(s[0]);
  return true;
}
bool ByteReader::U32(uint32_t* v) {
  std::string_view s;
  if (!Take(4, &s)) return false;
  std::memcpy(v, s.data(), 4);
  return true;
}
bool ByteReader::U64(uint64_t* v) {
  std::string_view s;
  if (!Take(8, &s)) return false;
  std::memcpy(v, s.data(), 8);
  return true;
}
bool ByteReader::Bytes(std::string* out) {
  uint32_t n = 0;
  std::string_view s;
  if (!U32(&n) || !Take(n, &s)) return false;
  out->assign(s);
  return true;
}
bool ByteReader::Tokens(std::vector<uint32_t>* tokens) {
  uint32_t n = 0;
  std::string_view s;
  if (!U32(&n) || n > in_.size() / 4 || !Take(size_t{n} * 4, &s)) return ok_ = false;
  tokens->resize(n);
  if (n > 0) std::memcpy(tokens->data(), s.data(), s.size());
  return true;
}
bool ByteReader::Message(LedgerMessage* m) {
  uint8_t role = 0;
  if (!U8(&role) || role >= kNumRoles) return ok_ = false;
  m->role = static_cast<Role>(role);
  return U32(&m->begin) && U32(&m->end) && Bytes(&m->text);
}
bool ByteReader::Messages(std::vector<LedgerMessage>* ms) {
  uint32_t n = 0;
  if (!U32(&n)) return false;
  ms->clear();
  for (uint32_t i = 0; i < n; ++i) {
    LedgerMessage m;
    if (!Message(&m)) return false;
    ms->push_back(std::move(m));
  }
  return true;
}
bool ByteReader::Worker(WorkerState* w) {
  return Bytes(&w->worker_id) && U64(&w->round) && U32(&w->num_tokens) && U64(&w->prefix_hash);
}
bool ByteReader::Usage(std::optional<RoundUsage>* u) {
  uint8_t known = 0;
  RoundUsage v;
  if (!U8(&known) || known > 1 || !U32(&v.prompt_tokens) || !U32(&v.cached_tokens) ||
      !U32(&v.completion_tokens)) {
    return ok_ = false;
  }
  *u = known == 1 ? std::optional<RoundUsage>(v) : std::nullopt;
  return true;
}
bool ByteReader::Usages(std::vector<std::optional<RoundUsage>>* usage) {
  uint32_t n = 0;
  if (!U32(&n) || n > in_.size() / kUsageBytes) return ok_ = false;
  usage->resize(n);
  for (std::optional<RoundUsage>& u : *usage) {
    if (!Usage(&u)) return false;
  }
  return true;
}

bool DecodeRawTokens(std::string_view blob, std::vector<uint32_t>* tokens) {
  if (blob.size() % 4 != 0) return false;
  tokens->resize(blob.size() / 4);
  if (!blob.empty()) std::memcpy(tokens->data(), blob.data(), blob.size());
  return true;
}

bool DecodeMessageStream(std::string_view blob, std::vector<LedgerMessage>* ms) {
  ByteReader r(blob);
  ms->clear();
  while (r.ok() && r.remaining() > 0) {
    LedgerMessage m;
    if (!r.Message(&m)) return false;
    ms->push_back(std::move(m));
  }
  return r.ok();
}

bool DecodeUsageStream(std::string_view blob, std::vector<std::optional<RoundUsage>>* usage) {
  if (blob.size() % kUsageBytes != 0) return false;
  ByteReader r(blob);
  usage->resize(blob.size() / kUsageBytes);
  for (std::optional<RoundUsage>& u : *usage) {
    if (!r.Usage(&u)) return false;
  }
  return r.done();
}

}  // namespace hc::router
