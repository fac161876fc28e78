#include "router/http/turn_exchange.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "router/service/chat_service.h"

namespace hc::router::http {
namespace {
namespace v1 = hybridcache::v1;

// Ledger ids are at most 128 characters (chat.proto); a branch appends 10.
constexpr size_t kMaxIdForSuffix = 118;

}  // namespace

std::string RandomHex(int n) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(static_cast<size_t>(n), '0');
  for (char& c : s) c = kHex[rng() & 15];
  return s;
}

// The Complete stream's reactor; deletes itself when done.
class TurnExchange::CompleteCall final : public grpc::ClientReadReactor<v1::CompleteEvent> {
 public:
  CompleteCall(std::shared_ptr<TurnExchange> ex, v1::CompleteRequest request)
      : ex_(std::move(ex)), request_(std::move(request)) {
    ex_->Prepare(&ctx_);
  }
  void Start() {
    ex_->SetActive(&ctx_);
    ex_->shared().stub->async()->Complete(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    // The next read is pending before this event is handled: gRPC's
    // in-process transport can drop a stream's last message when it arrives
    // with the status while no read is pending. The lock, held until the
    // event is handled, keeps the next read's reaction (which may run on
    // another thread) behind this one, so events are handled in order.
    absl::MutexLock lock(&read_mu_);
    v1::CompleteEvent event = std::move(event_);
    event_.Clear();
    StartRead(&event_);
    ex_->OnEvent(event);
  }
  void OnDone(const grpc::Status& status) override {
    ex_->SetActive(nullptr);
    ex_->OnDone(status);
    delete this;
  }

 private:
  std::shared_ptr<TurnExchange> ex_;
  grpc::ClientContext ctx_;
  v1::CompleteRequest request_;
  absl::Mutex read_mu_;
  v1::CompleteEvent event_;  // written by the pending read
};

TurnExchange::TurnExchange(std::shared_ptr<OpenAiServer::Shared> shared,
                           std::shared_ptr<HttpReply> reply, std::string authorization,
                           v1::SamplingParams sampling, std::unique_ptr<TurnFormat> format)
    : shared_(std::move(shared)),
      reply_(std::move(reply)),
      authorization_(std::move(authorization)),
      sampling_(std::move(sampling)),
      format_(std::move(format)) {
  absl::MutexLock lock(&shared_->mu);
  ++shared_->live;
}

TurnExchange::~TurnExchange() {
  absl::MutexLock lock(&shared_->mu);
  shared_->cancels.erase(this);
  --shared_->live;
}

void TurnExchange::Prepare(grpc::ClientContext* ctx) const {
  ctx->AddMetadata(kInProcessClientMetadata, "1");
  if (!authorization_.empty()) ctx->AddMetadata("authorization", authorization_);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + shared_->options.turn_timeout));
}

void TurnExchange::SetActive(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  active_ = ctx;
  if (ctx != nullptr && cancelled_) ctx->TryCancel();
}

void TurnExchange::WireCancel() {
  std::weak_ptr<TurnExchange> weak = weak_from_this();
  auto cancel = [weak] {
    if (std::shared_ptr<TurnExchange> e = weak.lock()) e->Cancel();
  };
  reply_->SetOnClose(cancel);
  absl::MutexLock lock(&shared_->mu);
  shared_->cancels[this] = cancel;
}

void TurnExchange::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (active_ != nullptr) active_->TryCancel();
}

void TurnExchange::Fail(const ApiError& error) { format_->Failed(*reply_, error, false); }

std::string TurnExchange::BranchKey(const std::string& client_id, const std::string& salt) const {
  return absl::StrCat(authorization_.size(), ":", authorization_, salt.size(), ":", salt,
                      client_id);
}

void TurnExchange::RunConversation(std::string client_id, std::string salt,
                                   std::vector<v1::ChatMessage> sent) {
  branch_key_ = BranchKey(client_id, salt);
  std::string ledger_id = client_id;
  {
    absl::MutexLock lock(&shared_->mu);
    auto it = shared_->branches.find(branch_key_);
    if (it != shared_->branches.end()) ledger_id = it->second;
  }
  struct GetCall {
    grpc::ClientContext ctx;
    v1::GetConversationRequest request;
    v1::Conversation response;
  };
  auto call = std::make_shared<GetCall>();
  Prepare(&call->ctx);
  call->request.set_conversation_id(ledger_id);
  call->request.set_cache_salt(salt);
  SetActive(&call->ctx);
  shared_->stub->async()->GetConversation(
      &call->ctx, &call->request, &call->response,
      [self = shared_from_this(), call, client_id = std::move(client_id), salt = std::move(salt),
       sent = std::move(sent)](grpc::Status status) mutable {
        self->SetActive(nullptr);
        TurnTarget t;
        t.cache_salt = salt;
        t.conversation_id = call->request.conversation_id();
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          t.messages = std::move(sent);
          t.expected_round = 0;
          return self->Run(std::move(t));
        }
        if (!status.ok()) return self->Fail(FromGrpc(status));
        const TurnPlan plan = PlanTurn(call->response.messages(), sent);
        const auto branch_id = [&] {
          return client_id.size() <= kMaxIdForSuffix ? absl::StrCat(client_id, ".b", RandomHex(8))
                                                     : absl::StrCat("hc-branch-", RandomHex(24));
        };
        switch (plan.kind) {
          case TurnPlan::Kind::kExtend:
            t.expected_round = call->response.committed_round();
            break;
          case TurnPlan::Kind::kFork:
            t.fork_source = t.conversation_id;
            t.fork_messages = plan.keep;
            t.conversation_id = branch_id();
            t.expected_round = 0;
            break;
          case TurnPlan::Kind::kNew:
            t.conversation_id = branch_id();
            t.expected_round = 0;
            break;
        }
        t.messages.assign(std::make_move_iterator(sent.begin() + plan.suffix_begin),
                          std::make_move_iterator(sent.end()));
        self->Run(std::move(t));
      });
}

void TurnExchange::Run(TurnTarget target) {
  target_ = std::move(target);
  v1::CompleteRequest req;
  req.set_conversation_id(target_.conversation_id);
  req.set_cache_salt(target_.cache_salt);
  for (const v1::ChatMessage& m : target_.messages) *req.add_messages() = m;
  if (target_.expected_round.has_value()) req.set_expected_round(*target_.expected_round);
  if (!target_.fork_source.empty()) {
    req.mutable_fork_from()->set_conversation_id(target_.fork_source);
    req.mutable_fork_from()->set_num_messages(target_.fork_messages);
  }
  *req.mutable_sampling() = sampling_;
  (new CompleteCall(shared_from_this(), std::move(req)))->Start();
}

void TurnExchange::OnEvent(const v1::CompleteEvent& event) {
  if (event.has_started()) {
    started_ = true;
    format_->Started(*reply_, event.started(), target_);
  } else if (event.has_chunk()) {
    format_->Chunk(*reply_, event.chunk());
  } else if (event.has_completed()) {
    completed_ = true;
    completed_event_ = event.completed();
  }
}

void TurnExchange::OnDone(const grpc::Status& status) {
  if (!status.ok() || !completed_) {
    ApiError e = status.ok() ? ApiError{.status = 500,
                                        .type = "server_error",
                                        .message = "the turn ended without completing"}
                             : FromGrpc(status);
    if (status.error_code() == grpc::StatusCode::CANCELLED) {
      e.status = 499;
      e.message = "the request was cancelled";
    }
    return format_->Failed(*reply_, e, started_);
  }
  if (!branch_key_.empty()) {
    absl::MutexLock lock(&shared_->mu);
    // Bounded: past the bound the map starts over (a forgotten branch costs
    // one recomputation, never a wrong answer: every turn is planned against
    // the ledger).
    if (shared_->branches.size() >= shared_->options.max_branches) shared_->branches.clear();
    shared_->branches[branch_key_] = target_.conversation_id;
  }
  format_->Completed(*reply_, completed_event_, target_);
  if (target_.one_shot) {
    // Nothing will continue it: forget it (and its worker's cached state).
    struct DeleteCall {
      grpc::ClientContext ctx;
      v1::DeleteConversationRequest request;
      v1::DeleteConversationResponse response;
    };
    auto call = std::make_shared<DeleteCall>();
    Prepare(&call->ctx);
    call->request.set_conversation_id(target_.conversation_id);
    call->request.set_cache_salt(target_.cache_salt);
    shared_->stub->async()->DeleteConversation(
        &call->ctx, &call->request, &call->response,
        [self = shared_from_this(), call](grpc::Status s) {
          if (!s.ok())
            HC_LOG(WARNING) << "one-shot conversation not deleted: " << s.error_message();
        });
  }
}

}  // namespace hc::router::http
