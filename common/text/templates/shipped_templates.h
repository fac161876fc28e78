// Real chat templates the product ships (ChatTemplate::ByName), compiled in
// from the .jinja files next to this header. Each keeps its model's license
// (tests/data/chat_templates/README.md lists sources and licenses).
#ifndef HC_COMMON_TEXT_TEMPLATES_SHIPPED_TEMPLATES_H_
#define HC_COMMON_TEXT_TEMPLATES_SHIPPED_TEMPLATES_H_

#include <string_view>

namespace hc::internal {

// IBM Granite-4.0-H's chat template (granite-4.0-h-micro/-tiny/-small): a
// default system prompt when the conversation has none, tool and document
// blocks. Apache-2.0.
extern const std::string_view kGranite4HTemplate;

// NVIDIA-Nemotron-Nano-9B-v2's chat template: not prefix-stable (it writes
// "<think>\n\n" in the generation prompt but not before earlier replies,
// whose reasoning it strips), so its continuing turns are rewrite turns
// (router/service/rewrite.h). NVIDIA Open Model License.
extern const std::string_view kNemotronNanoV2Template;

// Qwen3's chat template (Qwen/Qwen3-0.6B; the Qwen3 family's): reasoning
// ("<think>...</think>") of replies before the last user query is stripped,
// so a turn after a reply that reasoned is a rewrite turn. Apache-2.0.
extern const std::string_view kQwen3Template;

}  // namespace hc::internal

#endif  // HC_COMMON_TEXT_TEMPLATES_SHIPPED_TEMPLATES_H_
