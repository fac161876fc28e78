// Bounds on a turn's stop conditions, shared by the router's request
// validation and the worker's own check (the worker API is internal but
// reachable on the network, so the worker enforces them too). They keep the
// per-request stop matcher small: at most kMaxStopStrings * kMaxStopStringBytes
// automaton states, built once per turn.
#ifndef HC_COMMON_TEXT_STOP_LIMITS_H_
#define HC_COMMON_TEXT_STOP_LIMITS_H_

#include <cstddef>

namespace hc {

inline constexpr int kMaxStopStrings = 16;  // OpenAI allows 4
inline constexpr size_t kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;

}  // namespace hc

#endif  // HC_COMMON_TEXT_STOP_LIMITS_H_
