// Chained hash of a token sequence. The router and the worker both compute it
// over a conversation's committed tokens; equal hashes at equal lengths are how
// the worker proves it holds the state the router expects (a mismatch is a
// miss, never a guess). Extending a hash by more tokens equals hashing the
// concatenation, so each side updates it incrementally per turn.
#ifndef HC_COMMON_TOKEN_HASH_H_
#define HC_COMMON_TOKEN_HASH_H_

#include <cstdint>
#include <span>

namespace hc {

// Hash of the empty sequence.
inline constexpr uint64_t kEmptyTokenHash = 0x6a09e667f3bcc909ULL;

// splitmix64 finaliser: a bijective 64-bit mix with full avalanche.
constexpr uint64_t MixHash64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Returns the hash of (tokens hashed by `prev`) followed by `tokens`.
template <typename T>
constexpr uint64_t ExtendTokenHash(uint64_t prev, std::span<const T> tokens) {
  uint64_t h = prev;
  for (const T t : tokens) h = MixHash64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 1));
  return h;
}

template <typename T>
constexpr uint64_t TokenHash(std::span<const T> tokens) {
  return ExtendTokenHash(kEmptyTokenHash, tokens);
}

}  // namespace hc

#endif  // HC_COMMON_TOKEN_HASH_H_
