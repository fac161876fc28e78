// Small file helpers shared by the loaders.
#ifndef HC_COMMON_FILE_UTIL_H_
#define HC_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"

namespace hc {

// The whole file as bytes. NOT_FOUND naming the path when it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace hc

#endif  // HC_COMMON_FILE_UTIL_H_
