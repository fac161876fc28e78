#include "router/http/turn_exchange.h"

#include <openssl/evp.h>

#include <optional>
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

std::string MessagesDigest(std::span<const v1::ChatMessage> messages, const std::string* reply) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  // Length-prefixed, so that no two different lists hash the same input.
  const auto add = [ctx](const std::string& role, const std::string& content) {
    const std::string head = absl::StrCat(role.size(), ":", role, content.size(), ":");
    EVP_DigestUpdate(ctx, head.data(), head.size());
    EVP_DigestUpdate(ctx, content.data(), content.size());
  };
  for (const v1::ChatMessage& m : messages) add(m.role(), m.content());
  if (reply != nullptr) add("assistant", *reply);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<const char*>(out), len);
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
  client_id_ = client_id;
  salt_ = std::move(salt);
  sent_ = std::move(sent);
  std::optional<OpenAiServer::Shared::Branch> branch;
  {
    absl::MutexLock lock(&shared_->mu);
    auto it = shared_->branches.find(branch_key_);
    if (it != shared_->branches.end()) branch = it->second;
  }
  if (!branch.has_value()) {
    // Nothing known here: most likely a new conversation. If it is not, the
    // ledger refuses round 0 and the turn is planned.
    return RunConversationTurn(std::move(client_id), 0, 0, /*conditional=*/true);
  }
  const uint32_t n = branch->num_messages;
  if (n < sent_.size() && MessagesDigest(std::span(sent_).first(n)) == branch->digest) {
    return RunConversationTurn(std::move(branch->ledger_id), branch->round, n,
                               /*conditional=*/true);
  }
  PlanWithLedger(branch->ledger_id);
}

void TurnExchange::RunConversationTurn(std::string ledger_id, uint64_t round, uint32_t keep,
                                       bool conditional) {
  unplanned_ = conditional;
  kept_ = keep;
  TurnTarget t;
  t.cache_salt = salt_;
  t.conversation_id = std::move(ledger_id);
  t.expected_round = round;
  t.messages.assign(sent_.begin() + keep, sent_.end());
  Run(std::move(t));
}

void TurnExchange::PlanWithLedger(const std::string& ledger_id) {
  struct GetCall {
    grpc::ClientContext ctx;
    v1::GetConversationRequest request;
    v1::Conversation response;
  };
  auto call = std::make_shared<GetCall>();
  Prepare(&call->ctx);
  call->request.set_conversation_id(ledger_id);
  call->request.set_cache_salt(salt_);
  SetActive(&call->ctx);
  shared_->stub->async()->GetConversation(
      &call->ctx, &call->request, &call->response,
      [self = shared_from_this(), call](grpc::Status status) {
        self->SetActive(nullptr);
        const std::string& id = call->request.conversation_id();
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          return self->RunConversationTurn(id, 0, 0, /*conditional=*/false);
        }
        if (!status.ok()) return self->Fail(FromGrpc(status));
        const TurnPlan plan = PlanTurn(call->response.messages(), self->sent_);
        if (plan.kind == TurnPlan::Kind::kExtend) {
          return self->RunConversationTurn(id, call->response.committed_round(), plan.suffix_begin,
                                           /*conditional=*/false);
        }
        // A new branch: a fork of the kept messages, or a new conversation.
        const std::string& client_id = self->client_id_;
        const std::string branch = client_id.size() <= kMaxIdForSuffix
                                       ? absl::StrCat(client_id, ".b", RandomHex(8))
                                       : absl::StrCat("hc-branch-", RandomHex(24));
        self->kept_ = plan.suffix_begin;
        self->unplanned_ = false;
        TurnTarget t;
        t.cache_salt = self->salt_;
        t.conversation_id = branch;
        t.expected_round = 0;
        if (plan.kind == TurnPlan::Kind::kFork) {
          t.fork_source = id;
          t.fork_messages = plan.keep;
        }
        t.messages.assign(self->sent_.begin() + plan.suffix_begin, self->sent_.end());
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
    if (!branch_key_.empty()) reply_text_ += event.chunk().text();
    format_->Chunk(*reply_, event.chunk());
  } else if (event.has_completed()) {
    completed_ = true;
    completed_event_ = event.completed();
  }
}

void TurnExchange::OnDone(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION && unplanned_ && !started_) {
    // The ledger's round is not the one this router last committed (or the
    // conversation is not new): plan against what it holds.
    unplanned_ = false;
    return PlanWithLedger(target_.conversation_id);
  }
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
    // What the ledger now holds: the kept messages, the sent ones, the reply.
    std::vector<v1::ChatMessage> committed(sent_.begin(), sent_.begin() + kept_);
    committed.insert(committed.end(), target_.messages.begin(), target_.messages.end());
    OpenAiServer::Shared::Branch b{.ledger_id = target_.conversation_id,
                                   .round = completed_event_.committed_round(),
                                   .num_messages = static_cast<uint32_t>(committed.size() + 1),
                                   .digest = MessagesDigest(committed, &reply_text_)};
    absl::MutexLock lock(&shared_->mu);
    // Bounded: past the bound the map starts over (a forgotten branch costs
    // at most one recomputation, never a wrong answer: a turn that does not
    // extend what this router committed is planned against the ledger).
    if (shared_->branches.size() >= shared_->options.max_branches) shared_->branches.clear();
    shared_->branches[branch_key_] = std::move(b);
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
