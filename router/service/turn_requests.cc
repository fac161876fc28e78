#include "router/service/turn_requests.h"

#include "common/logging.h"

namespace hc::router {

namespace v1 = hybridcache::v1;

v1::ExecuteRequest BuildExecuteRequest(const ExecuteInputs& in) {
  const ConversationRecord& rec = *in.record;
  const std::vector<uint32_t>& suffix = in.suffix->tokens;
  v1::ExecuteRequest req;
  req.mutable_key()->set_cache_salt(in.key->cache_salt);
  req.mutable_key()->set_conversation_id(in.key->conversation_id);
  req.mutable_key()->set_tenant(in.key->tenant);
  req.set_request_id(in.request_id);
  req.set_new_round(rec.round + 1);
  if (in.snapshot_at.has_value()) req.set_snapshot_at(*in.snapshot_at);
  if (in.sticky) {
    auto* ex = req.mutable_expected();
    ex->set_round(rec.worker.round);
    ex->set_num_tokens(rec.worker.num_tokens);
    ex->set_prefix_hash(rec.worker.prefix_hash);
    auto* s = req.mutable_suffix_token_ids();
    s->Reserve(static_cast<int>(rec.tokens.size() - rec.worker.num_tokens + suffix.size()));
    s->Add(rec.tokens.begin() + rec.worker.num_tokens, rec.tokens.end());
    s->Add(suffix.begin(), suffix.end());
  } else {
    // New worker (or lost state): recompute from the ledger's history.
    req.set_has_history(!rec.tokens.empty());
    req.mutable_history_token_ids()->Add(rec.tokens.begin(), rec.tokens.end());
    req.mutable_suffix_token_ids()->Add(suffix.begin(), suffix.end());
  }
  return req;
}

CommitRequest BuildCommitRequest(const TextCodec& codec, const ConversationRecord& record,
                                 const std::vector<TurnMessage>& messages,
                                 const EncodedTurn& suffix, const std::vector<uint32_t>& generated,
                                 WorkerState worker) {
  const uint32_t base = static_cast<uint32_t>(record.tokens.size());
  CommitRequest c;
  c.expected_round = record.round;
  c.appended_tokens.reserve(suffix.tokens.size() + generated.size());
  c.appended_tokens = suffix.tokens;
  c.appended_tokens.insert(c.appended_tokens.end(), generated.begin(), generated.end());
  if (!messages.empty()) {
    for (size_t i = 0; i < messages.size(); ++i) {
      c.appended_messages.push_back(LedgerMessage{messages[i].role, base + suffix.message_begins[i],
                                                  base + suffix.message_ends[i],
                                                  messages[i].content});
    }
  } else {
    // Raw tokens: recorded as a user message with their decoded text.
    c.appended_messages.push_back(LedgerMessage{Role::kUser, base,
                                                base + static_cast<uint32_t>(suffix.tokens.size()),
                                                codec.Decode(suffix.tokens)});
  }
  const uint32_t reply_begin = base + static_cast<uint32_t>(suffix.tokens.size());
  c.appended_messages.push_back(LedgerMessage{Role::kAssistant, reply_begin,
                                              reply_begin + static_cast<uint32_t>(generated.size()),
                                              codec.Decode(generated)});
  c.worker = std::move(worker);
  return c;
}

hybridcache::v1::CompleteEvent PopNextWrite(std::deque<hybridcache::v1::CompleteEvent>& queue) {
  HC_CHECK(!queue.empty()) << "PopNextWrite on an empty queue";
  hybridcache::v1::CompleteEvent next = std::move(queue.front());
  queue.pop_front();
  if (!next.has_chunk()) return next;
  hybridcache::v1::TokenChunk* merged = next.mutable_chunk();
  while (!queue.empty() && queue.front().has_chunk()) {
    const hybridcache::v1::TokenChunk& c = queue.front().chunk();
    merged->mutable_token_ids()->Add(c.token_ids().begin(), c.token_ids().end());
    merged->mutable_text()->append(c.text());
    merged->mutable_logprobs()->Add(c.logprobs().begin(), c.logprobs().end());
    merged->mutable_top_logprobs()->MergeFrom(c.top_logprobs());
    queue.pop_front();
  }
  return next;
}

}  // namespace hc::router
