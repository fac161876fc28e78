// Little-endian binary encoding of ledger data, shared by the file backend
// (log and snapshot records) and the Redis backend (token, message and worker
// blobs), plus CRC-32C for record framing.
//
// A round's usage (RoundUsage) encodes in kUsageBytes: u8 known (0: unknown,
// the u32s then 0), u32 prompt, u32 cached, u32 completion tokens. The Redis
// commit script pads with unknown ones, so this layout is fixed.
#ifndef HC_ROUTER_LEDGER_RECORD_CODEC_H_
#define HC_ROUTER_LEDGER_RECORD_CODEC_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router/ledger/ledger.h"

namespace hc::router {

uint32_t Crc32c(std::string_view data);

inline constexpr size_t kUsageBytes = 13;

// Appends to a string it does not own.
class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U32(uint32_t v);
  void U64(uint64_t v);
  void Bytes(std::string_view s);                    // u32 length + bytes
  void Tokens(std::span<const uint32_t> tokens);     // u32 count + u32 each
  void RawTokens(std::span<const uint32_t> tokens);  // u32 each, no count
  void Message(const LedgerMessage& m);
  void Messages(std::span<const LedgerMessage> ms);  // u32 count + each
  void Worker(const WorkerState& w);
  void Usage(const std::optional<RoundUsage>& u);                 // kUsageBytes
  void Usages(std::span<const std::optional<RoundUsage>> usage);  // u32 count + each

 private:
  std::string* out_;
};

// Reads from a view it does not own; every getter returns false once the data
// runs out or is malformed (and stays failed).
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v);
  bool U32(uint32_t* v);
  bool U64(uint64_t* v);
  bool Bytes(std::string* s);
  bool Tokens(std::vector<uint32_t>* tokens);
  bool Message(LedgerMessage* m);
  bool Messages(std::vector<LedgerMessage>* ms);
  bool Worker(WorkerState* w);
  bool Usage(std::optional<RoundUsage>* u);
  bool Usages(std::vector<std::optional<RoundUsage>>* usage);
  bool done() const { return ok_ && in_.empty(); }
  bool ok() const { return ok_; }
  size_t remaining() const { return in_.size(); }

 private:
  bool Take(size_t n, std::string_view* out);
  std::string_view in_;
  bool ok_ = true;
};

// Decodes a RawTokens blob (its length must be a multiple of 4).
bool DecodeRawTokens(std::string_view blob, std::vector<uint32_t>* tokens);
// Decodes back-to-back Message encodings.
bool DecodeMessageStream(std::string_view blob, std::vector<LedgerMessage>* ms);
// Decodes back-to-back Usage encodings.
bool DecodeUsageStream(std::string_view blob, std::vector<std::optional<RoundUsage>>* usage);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_RECORD_CODEC_H_
