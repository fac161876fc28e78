// Chat Completions replies (POST /v1/chat/completions): one chat.completion
// object, or server-sent events of chat.completion.chunk objects ending with
// `data: [DONE]`.
#ifndef HC_ROUTER_HTTP_CHAT_FORMAT_H_
#define HC_ROUTER_HTTP_CHAT_FORMAT_H_

#include <memory>
#include <string>

#include "router/http/turn_exchange.h"
#include "router/service/text_codec.h"

namespace hc::router::http {

struct ChatFormatOptions {
  std::string model;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  std::string client_conversation_id;  // echoed in X-Conversation-Id; "" for one-shot
  const TextCodec* codec = nullptr;    // token texts of logprobs
};

std::unique_ptr<TurnFormat> NewChatFormat(ChatFormatOptions options);

// Response headers of an error (Retry-After) and the reply itself.
HttpResponse ErrorResponse(const ApiError& error);

}  // namespace hc::router::http

#endif  // HC_ROUTER_HTTP_CHAT_FORMAT_H_
