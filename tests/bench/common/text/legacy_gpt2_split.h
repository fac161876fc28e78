// The hand-written GPT-2 split that common/text/tokenizer.cc used before the
// pre-tokenizer regexes ran on Oniguruma (commit 9946cd7), kept here only as
// the "before" of tokenizer_bench's speed comparison. Not used by the product:
// its approximate Unicode table splits some scripts differently from
// `tokenizers`.
#ifndef HC_TESTS_BENCH_COMMON_TEXT_LEGACY_GPT2_SPLIT_H_
#define HC_TESTS_BENCH_COMMON_TEXT_LEGACY_GPT2_SPLIT_H_

#include <string_view>
#include <vector>

namespace hc::bench_reference {

std::vector<std::string_view> LegacySplitGpt2(std::string_view text);

}  // namespace hc::bench_reference

#endif  // HC_TESTS_BENCH_COMMON_TEXT_LEGACY_GPT2_SPLIT_H_
