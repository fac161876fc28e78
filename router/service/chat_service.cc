#include "router/service/chat_service.h"

#include <functional>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/raw_proto.h"
#include "common/request_checks.h"
#include "common/tsan_annotations.h"
#include "router/service/turn.h"
#include "router/service/validation.h"

namespace hc::router {
namespace {
namespace v1 = hybridcache::v1;
}  // namespace

ChatServiceImpl::ChatServiceImpl(ChatServiceOptions options, ConversationLedger* ledger,
                                 WorkerPool* pool, const TextCodec* codec, RouterMetrics* metrics)
    : work_pool_(options.work_threads), deps_{std::move(options), ledger, pool, codec, metrics,
                                              &work_pool_} {}

ChatServiceImpl::~ChatServiceImpl() {
  absl::MutexLock lock(&deps_.live_mu);
  deps_.live_mu.Await(absl::Condition(
      +[](int* live) { return *live == 0; }, &deps_.live_calls));
}

absl::StatusOr<Caller> AuthenticateCall(const ApiKeyStore* keys,
                                        const grpc::CallbackServerContext& context) {
  if (keys == nullptr) return AnonymousCaller();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return keys->Authenticate(std::nullopt);
  return keys->Authenticate(std::string_view(it->second.data(), it->second.size()));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* ChatServiceImpl::Complete(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return StartTurn(&deps_, context, request, AuthenticateCall(deps_.options.api_keys, *context));
}

void ChatServiceImpl::CallStarted() {
  absl::MutexLock lock(&deps_.live_mu);
  ++deps_.live_calls;
}

void ChatServiceImpl::CallEnded() {
  absl::MutexLock lock(&deps_.live_mu);
  --deps_.live_calls;
}

absl::StatusOr<Caller> ChatServiceImpl::Authenticate(const grpc::CallbackServerContext& context) {
  absl::StatusOr<Caller> caller = AuthenticateCall(deps_.options.api_keys, context);
  if (!caller.ok()) deps_.metrics->TenantRefusal("", "unauthenticated");
  return caller;
}

absl::Status ChatServiceImpl::CheckCallerSalt(const Caller& caller, std::string_view salt) {
  absl::Status s = CheckSalt(caller, salt);
  if (!s.ok()) deps_.metrics->TenantRefusal(caller.tenant, "permission_denied");
  return s;
}

void ChatServiceImpl::FinishUnary(grpc::ServerUnaryReactor* reactor, absl::Time start,
                                  const absl::Status& status) {
  deps_.metrics->Request(status.code(), absl::ToDoubleSeconds(absl::Now() - start));
  reactor->Finish(ToGrpcStatus(status));
}

namespace {

// Parses a Get/Delete request and checks its key.
template <typename Request>
absl::Status ParseKeyedRequest(const grpc::ByteBuffer& raw, Request* request) {
  absl::Status s = ParseRawRequest(raw, request);
  if (s.ok()) s = ValidateConversationKey(request->conversation_id(), request->cache_salt());
  return s;
}

}  // namespace

grpc::ServerUnaryReactor* ChatServiceImpl::GetConversation(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* raw,
                                                           grpc::ByteBuffer* response) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::GetConversationRequest request;
  // Authenticated first: an anonymous caller learns nothing, not even whether
  // its request is well formed.
  absl::StatusOr<Caller> caller = Authenticate(*context);
  absl::Status s = caller.status();
  if (s.ok()) s = ParseKeyedRequest(*raw, &request);
  if (s.ok()) s = CheckCallerSalt(*caller, request.cache_salt());
  if (!s.ok()) {
    FinishUnary(reactor, start, s);
    return reactor;
  }
  CallStarted();
  deps_.ledger->Get(LedgerKey{request.cache_salt(), request.conversation_id(), caller->tenant},
                    [this, id = request.conversation_id(), admin = caller->admin, response, reactor,
                     start](absl::StatusOr<ConversationRecord> rec) {
                      if (rec.ok()) {
                        v1::Conversation out;
                        out.set_conversation_id(id);
                        out.set_committed_round(rec->round);
                        out.set_num_tokens(static_cast<uint32_t>(rec->tokens.size()));
                        // Worker addresses are for admins only (chat.proto).
                        if (admin) out.set_worker_id(rec->worker.worker_id);
                        for (const LedgerMessage& m : rec->messages) {
                          auto* msg = out.add_messages();
                          msg->set_role(std::string(RoleName(m.role)));
                          msg->set_content(m.text);
                        }
                        for (uint64_t r = 1; r <= rec->round; ++r) {
                          auto* round = out.add_rounds();
                          if (std::optional<RoundUsage> u = UsageOfRound(*rec, r)) {
                            round->mutable_usage()->set_prompt_tokens(u->prompt_tokens);
                            round->mutable_usage()->set_cached_tokens(u->cached_tokens);
                            round->mutable_usage()->set_completion_tokens(u->completion_tokens);
                          }
                        }
                        *response = SerializeRawResponse(out);
                      }
                      FinishUnary(reactor, start, rec.status());
                      CallEnded();
                    });
  return reactor;
}

namespace {

// Releases a deleted conversation's state on its worker; best effort (a cache
// is disposable).
struct ReleaseCall {
  grpc::ClientContext ctx;
  v1::ReleaseRequest request;
  v1::ReleaseResponse response;
};

// Where a ReleaseCall's callback synchronises with the thread that started
// it, for ThreadSanitizer only (common/tsan_annotations.h).
char g_release_handoff;

}  // namespace

grpc::ServerUnaryReactor* ChatServiceImpl::DeleteConversation(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* raw,
                                                              grpc::ByteBuffer* response) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::DeleteConversationRequest request;
  absl::StatusOr<Caller> caller = Authenticate(*context);
  absl::Status s = caller.status();
  if (s.ok()) s = ParseKeyedRequest(*raw, &request);
  if (s.ok()) s = CheckCallerSalt(*caller, request.cache_salt());
  if (!s.ok()) {
    FinishUnary(reactor, start, s);
    return reactor;
  }
  *response = SerializeRawResponse(v1::DeleteConversationResponse());
  CallStarted();
  const LedgerKey key{request.cache_salt(), request.conversation_id(), caller->tenant};
  // Get (for the worker that holds the state), then Delete, then Release on
  // that worker; the call finishes after the Release answers (or fails).
  deps_.ledger->Get(key, [this, key, reactor, start](absl::StatusOr<ConversationRecord> rec) {
    if (!rec.ok()) {
      FinishUnary(reactor, start, rec.status());
      return CallEnded();
    }
    std::string worker_id = rec->worker.worker_id;
    deps_.ledger->Delete(key, [this, key, reactor, start, worker_id](absl::Status status) {
      deps_.metrics->Request(status.code(), absl::ToDoubleSeconds(absl::Now() - start));
      std::shared_ptr<Worker> worker =
          status.ok() && !worker_id.empty() ? deps_.pool->Find(worker_id) : nullptr;
      if (worker == nullptr || worker->stub() == nullptr) {
        reactor->Finish(ToGrpcStatus(status));
        return CallEnded();
      }
      auto* call = new ReleaseCall;
      call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
      call->request.mutable_key()->set_cache_salt(key.cache_salt);
      call->request.mutable_key()->set_conversation_id(key.conversation_id);
      call->request.mutable_key()->set_tenant(key.tenant);
      // Built before the release that precedes the call, so the callback's
      // captures are covered by it (common/tsan_annotations.h).
      std::function<void(grpc::Status)> on_done = [this, call, reactor, worker_id](grpc::Status s) {
        HC_TSAN_ACQUIRE(&g_release_handoff);
        if (!s.ok()) {
          HC_LOG(WARNING) << "release on " << worker_id << " failed: " << s.error_message();
        }
        delete call;
        reactor->Finish(grpc::Status::OK);
        CallEnded();
      };
      HC_TSAN_RELEASE(&g_release_handoff);
      worker->stub()->async()->Release(&call->ctx, &call->request, &call->response,
                                       std::move(on_done));
    });
  });
  return reactor;
}

}  // namespace hc::router
