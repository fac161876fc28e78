// One HTTP request that runs a turn through the ChatService (openai_server.h):
// it plans the turn against the ledger (GetConversation, PlanTurn), runs
// Complete, and hands the events to a Format that writes the API's replies.
//
// Lifetime: owned by shared_ptrs held by the gRPC calls in flight; the
// server's Shared counts it live until it ended. A client that disconnects
// cancels the call in flight; nothing is committed then.
#ifndef HC_ROUTER_HTTP_TURN_EXCHANGE_H_
#define HC_ROUTER_HTTP_TURN_EXCHANGE_H_

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/http_server.h"
#include "grpcpp/client_context.h"
#include "hybridcache/v1/chat.grpc.pb.h"
#include "router/http/openai_server.h"
#include "router/http/openai_types.h"

namespace hc::router::http {

// Where a turn runs: the ledger conversation and how it attaches.
struct TurnTarget {
  std::string conversation_id;  // ledger id
  std::string cache_salt;
  std::vector<hybridcache::v1::ChatMessage> messages;  // sent to Complete
  std::optional<uint64_t> expected_round;
  std::string fork_source;  // non-empty: fork_from this conversation
  uint32_t fork_messages = 0;
  bool one_shot = false;  // delete the conversation afterwards
};

// Writes one API's replies (Chat Completions or Responses).
class TurnFormat {
 public:
  virtual ~TurnFormat() = default;
  // The turn's first event: the reply starts (a stream's head, for streams).
  virtual void Started(HttpReply& reply, const hybridcache::v1::TurnStarted& started,
                       const TurnTarget& target) = 0;
  virtual void Chunk(HttpReply& reply, const hybridcache::v1::TokenChunk& chunk) = 0;
  // The turn committed as `target`'s `round`.
  virtual void Completed(HttpReply& reply, const hybridcache::v1::TurnCompleted& completed,
                         const TurnTarget& target) = 0;
  // The turn failed; `started`: after Started.
  virtual void Failed(HttpReply& reply, const ApiError& error, bool started) = 0;
};

class TurnExchange : public std::enable_shared_from_this<TurnExchange> {
 public:
  TurnExchange(std::shared_ptr<OpenAiServer::Shared> shared, std::shared_ptr<HttpReply> reply,
               std::string authorization, hybridcache::v1::SamplingParams sampling,
               std::unique_ptr<TurnFormat> format);
  ~TurnExchange();

  // Runs the turn on `target` as it is.
  void Run(TurnTarget target);
  // Runs the turn for the client's conversation `client_id` (the whole sent
  // history in `sent`). When the sent history extends what this router last
  // committed for it (Shared::branches), or the router knows nothing of it
  // (most likely a new conversation), the turn runs at once, conditional on
  // the ledger's round (expected_round); when that condition fails (another
  // router or client moved the conversation, or it is not new), and in every
  // other case, the turn is planned against the ledger's committed messages
  // (GetConversation, PlanTurn) first.
  void RunConversation(std::string client_id, std::string salt,
                       std::vector<hybridcache::v1::ChatMessage> sent);
  // Sends an error reply (nothing ran).
  void Fail(const ApiError& error);

  const std::string& authorization() const { return authorization_; }
  OpenAiServer::Shared& shared() { return *shared_; }
  // Sets the call metadata and deadline.
  void Prepare(grpc::ClientContext* ctx) const;
  // Makes a client disconnect and the server's shutdown Cancel this
  // exchange. Call once, right after construction.
  void WireCancel();
  // Cancels the call in flight, if any (client gone, or shutdown).
  void Cancel();
  // The context that Cancel reaches (null: none in flight).
  void SetActive(grpc::ClientContext* ctx);

  // Events of the Complete call (its reactor, one at a time).
  void OnEvent(const hybridcache::v1::CompleteEvent& event);
  void OnDone(const grpc::Status& status);

 private:
  class CompleteCall;
  std::string BranchKey(const std::string& client_id, const std::string& salt) const;
  // Plans the conversation turn against ledger conversation `ledger_id`.
  void PlanWithLedger(const std::string& ledger_id);
  // Runs the conversation turn on `ledger_id` at `round`, sending sent_
  // from message `keep` on (the ledger holds the first `keep`).
  void RunConversationTurn(std::string ledger_id, uint64_t round, uint32_t keep, bool conditional);

  std::shared_ptr<OpenAiServer::Shared> shared_;
  std::shared_ptr<HttpReply> reply_;
  const std::string authorization_;
  const hybridcache::v1::SamplingParams sampling_;
  std::unique_ptr<TurnFormat> format_;
  TurnTarget target_;
  hybridcache::v1::TurnCompleted completed_event_;
  std::string branch_key_;  // non-empty: a conversation turn; record the branch on success
  // A conversation turn's sent history, and how many of its messages the
  // ledger already holds (they are not sent again).
  std::vector<hybridcache::v1::ChatMessage> sent_;
  uint32_t kept_ = 0;
  std::string client_id_;
  std::string salt_;
  // The turn ran without planning: FAILED_PRECONDITION (the round moved)
  // plans it against the ledger and runs it again.
  bool unplanned_ = false;
  std::string reply_text_;
  bool started_ = false;
  bool completed_ = false;
  absl::Mutex mu_;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// A random lower-case hex string of `n` characters.
std::string RandomHex(int n);

// SHA-256 over the messages' roles and contents, then `reply` as an
// assistant message when it is set.
std::string MessagesDigest(std::span<const hybridcache::v1::ChatMessage> messages,
                           const std::string* reply = nullptr);

}  // namespace hc::router::http

#endif  // HC_ROUTER_HTTP_TURN_EXCHANGE_H_
