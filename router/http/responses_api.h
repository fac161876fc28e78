// The Responses API (POST /v1/responses, GET /v1/responses/{id}) on the
// conversation ledger. A response id names one committed round of one
// ledger conversation, signed with the server's secret together with the
// cache_salt it was made under (response_id.h), so that a client can neither
// forge one nor use one under another salt (or, the ledger being per tenant,
// another tenant's key): those are "not found".
//
// previous_response_id of the conversation's latest round continues it (only
// the new input is sent: a cache hit); of an older round, the turn runs on a
// new conversation forked from that round's messages (chat.proto ForkFrom).
#ifndef HC_ROUTER_HTTP_RESPONSES_API_H_
#define HC_ROUTER_HTTP_RESPONSES_API_H_

#include <memory>
#include <optional>
#include <string>

#include "common/http_server.h"
#include "router/http/openai_server.h"

namespace hc::router::http {

void HandleResponses(const std::shared_ptr<OpenAiServer::Shared>& shared, HttpRequest req,
                     std::shared_ptr<HttpReply> reply);

// A response id's contents.
struct ResponseRef {
  std::string conversation_id;  // ledger id
  uint64_t round = 0;
};
std::string EncodeResponseId(const std::string& secret, const std::string& salt,
                             const ResponseRef& ref);
// nullopt when the id is malformed or was not made by `secret` under `salt`.
std::optional<ResponseRef> DecodeResponseId(const std::string& secret, const std::string& salt,
                                            const std::string& id);

}  // namespace hc::router::http

#endif  // HC_ROUTER_HTTP_RESPONSES_API_H_
