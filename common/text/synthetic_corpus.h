// A small embedded English corpus (a few KB, written for this project) used to
// train the synthetic checkpoints' BPE vocabulary deterministically.
#ifndef HC_COMMON_TEXT_SYNTHETIC_CORPUS_H_
#define HC_COMMON_TEXT_SYNTHETIC_CORPUS_H_

#include <string>
#include <string_view>

namespace hc {

// The base text.
std::string_view SyntheticCorpus();

// The base text plus deterministic variants of its words (capitalised,
// upper-case, with and without a leading space, simple suffixes) and number
// words, `rounds` times more varied; used to reach larger vocabularies.
std::string AugmentedSyntheticCorpus(int rounds);

}  // namespace hc

#endif  // HC_COMMON_TEXT_SYNTHETIC_CORPUS_H_
