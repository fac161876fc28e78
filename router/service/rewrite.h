// Rewrite turns: a continuing turn whose chat template renders the committed
// history differently once the new messages are added (EncodedTurn::rewrite).
//
// The turn is computed on exactly the rendering the template gives, never on
// a history the model would not see. It keeps the longest prefix of the
// committed tokens that the rendering's tokens share, cut back to a committed
// message boundary (a LedgerMessage's begin or end), and replaces the rest:
// the history messages from there on are committed again with their ranges
// in the new rendering, followed by the new messages and the reply
// (CommitRequest::rewrite_from, applied atomically by every ledger backend).
//
// Cost: a recurrent state cannot be rolled back from the committed length to
// the kept boundary. So for templates that rewrite history
// (TextCodec::RewritesHistory) the router asks the worker, on every turn, for
// a snapshot of the Mamba state at the prompt's last message boundary
// (ExecuteRequest::snapshot_at), which is where the next rewrite turn's kept
// prefix ends. The rewrite turn is sent like a first turn (the kept tokens as
// history, no expected state); the worker that holds a snapshot whose tokens
// (checked by hash) are a prefix of that history resumes there and computes
// only what follows (usage.cached_tokens = the snapshot's position). Without
// it (evicted, restarted, another worker) the worker recomputes from token 0,
// with the same result (docs/router.md).
#ifndef HC_ROUTER_SERVICE_REWRITE_H_
#define HC_ROUTER_SERVICE_REWRITE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "router/ledger/ledger.h"
#include "router/service/text_codec.h"

namespace hc::router {

// Turns a rewrite encoding into an ordinary continuation of the kept prefix:
//   `record`   loses its tokens and messages past the kept boundary (its
//              round and worker state stay: the commit still expects the
//              round, and the worker state is used only if it lies within
//              the kept tokens);
//   `messages` becomes the re-committed history messages, then the new ones;
//   `enc`      becomes the tokens after the boundary, with message ranges
//              relative to them, and is no longer a rewrite.
// Returns the kept token count (the commit's rewrite_from). `enc` must hold
// one range per record message followed by one per entry of `messages`;
// otherwise (a codec bug) INTERNAL, changing nothing.
absl::StatusOr<uint32_t> ApplyRewrite(ConversationRecord& record,
                                      std::vector<TurnMessage>& messages, EncodedTurn& enc);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_REWRITE_H_
