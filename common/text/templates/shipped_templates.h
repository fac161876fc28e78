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

}  // namespace hc::internal

#endif  // HC_COMMON_TEXT_TEMPLATES_SHIPPED_TEMPLATES_H_
