// The messages a turn builds: the Execute request to a worker and the ledger
// commit of a finished turn (both from the ledger's record), and the client
// stream's next message from the events queued for it.
#ifndef HC_ROUTER_SERVICE_TURN_REQUESTS_H_
#define HC_ROUTER_SERVICE_TURN_REQUESTS_H_

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "hybridcache/v1/chat.pb.h"
#include "hybridcache/v1/worker.pb.h"
#include "router/ledger/ledger.h"
#include "router/service/text_codec.h"

namespace hc::router {

struct ExecuteInputs {
  const LedgerKey* key;
  const ConversationRecord* record;  // the committed conversation
  const EncodedTurn* suffix;         // the new turn's tokens
  std::string request_id;
  // Sticky: the worker holds the record's committed state; send `expected`
  // and only the tokens after it. Otherwise the whole history.
  bool sticky = false;
  // ExecuteRequest::snapshot_at: where the worker should keep a Mamba state
  // snapshot (absolute token position), if anywhere.
  std::optional<uint32_t> snapshot_at;
};

// The Execute request of one attempt (sampling is left to the caller).
hybridcache::v1::ExecuteRequest BuildExecuteRequest(const ExecuteInputs& in);

// What a finished turn appends: the suffix and the generated tokens, the new
// messages (raw-token turns become one user message with their decoded text)
// and the assistant's reply, and the worker state the worker reported.
CommitRequest BuildCommitRequest(const TextCodec& codec, const ConversationRecord& record,
                                 const std::vector<TurnMessage>& messages,
                                 const EncodedTurn& suffix, const std::vector<uint32_t>& generated,
                                 WorkerState worker);

// Removes and returns the next message for the client: the front event, and
// when it is a chunk, every chunk queued right behind it concatenated into it
// (token ids, text, logprobs in order), so the stream carries the same
// content in fewer messages. `queue` must not be empty.
hybridcache::v1::CompleteEvent PopNextWrite(std::deque<hybridcache::v1::CompleteEvent>& queue);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_TURN_REQUESTS_H_
