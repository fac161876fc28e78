// Early-return helpers for absl::Status / absl::StatusOr. Abseil's LTS in
// Debian 12 has no public equivalents.
#ifndef HC_COMMON_STATUS_MACROS_H_
#define HC_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HC_STATUS_CONCAT_INNER_(a, b) a##b
#define HC_STATUS_CONCAT_(a, b) HC_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define HC_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status hc_status_ = (expr);      \
    if (!hc_status_.ok()) return hc_status_; \
  } while (false)

// `HC_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a StatusOr or returns its error.
#define HC_ASSIGN_OR_RETURN(lhs, rexpr) \
  HC_ASSIGN_OR_RETURN_IMPL_(HC_STATUS_CONCAT_(hc_statusor_, __LINE__), lhs, rexpr)
#define HC_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

#endif  // HC_COMMON_STATUS_MACROS_H_
