// hcctl: command-line client of the ChatService.
//
//   hcctl chat   --conversation ID [--salt S]     interactive: one user turn per stdin line
//   hcctl send   --conversation ID --message TEXT one turn, reply on stdout
//   hcctl get    --conversation ID                committed messages
//   hcctl delete --conversation ID
//   hcctl hash-key [KEY]                          SHA-256 of an API key for the
//                                                 router's --api_keys_file (KEY
//                                                 from stdin when omitted)
//
// With --api_key (or $HC_API_KEY) every call carries
// `authorization: Bearer <key>`.
//
// Every turn prints its stats to stderr: round, worker, prompt and cached
// tokens, time to first token and total time.
//
// TLS: --tls_ca CA.pem (or --tls for the system roots) verifies a router
// started with --tls_cert; --tls_cert/--tls_key present a client certificate
// to one started with --tls_client_ca.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/tls.h"
#include "grpcpp/create_channel.h"
#include "hybridcache/v1/chat.grpc.pb.h"
#include "router/tenancy/api_keys.h"

ABSL_FLAG(std::string, router, "127.0.0.1:50051", "Router address host:port");
ABSL_FLAG(std::string, conversation, "", "Conversation id");
ABSL_FLAG(std::string, salt, "", "Cache salt (namespace)");
ABSL_FLAG(std::string, message, "", "send: the user message");
ABSL_FLAG(std::string, role, "user", "send/chat: role of the messages");
ABSL_FLAG(int32_t, max_tokens, 0, "Reply length limit (0: the server's default)");
ABSL_FLAG(double, temperature, -1, "Sampling temperature (<0: the server's default)");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(5), "Deadline per call");
ABSL_FLAG(bool, tls, false, "Connect over TLS, verifying the router against the system roots");
ABSL_FLAG(std::string, tls_ca, "",
          "Connect over TLS, verifying the router's certificate against these PEM CA certificates");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate to present (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the router's certificate must carry, when it is not the host of --router");
ABSL_FLAG(std::string, api_key, "",
          "API key sent as 'authorization: Bearer <key>' (default: $HC_API_KEY; prefer the "
          "environment: flags show up in ps)");

namespace {

namespace v1 = hybridcache::v1;

// Deadline and credentials of every call.
void Prepare(grpc::ClientContext& ctx) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    if (const char* env = std::getenv("HC_API_KEY"); env != nullptr) key = env;
  }
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
}

int HashKey(const std::vector<char*>& args) {
  std::string key;
  if (args.size() == 3) {
    key = args[2];
  } else if (!std::getline(std::cin, key)) {
    std::fprintf(stderr, "hash-key: no key on stdin\n");
    return 2;
  }
  if (key.empty()) {
    std::fprintf(stderr, "hash-key: the key is empty\n");
    return 2;
  }
  std::printf("%s\n", hc::router::HashApiKey(key).c_str());
  return 0;
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n",
               absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(),
               s.error_message().c_str());
  return 1;
}

int Send(v1::ChatService::Stub& stub, const std::string& text) {
  v1::CompleteRequest req;
  req.set_conversation_id(absl::GetFlag(FLAGS_conversation));
  req.set_cache_salt(absl::GetFlag(FLAGS_salt));
  auto* m = req.add_messages();
  m->set_role(absl::GetFlag(FLAGS_role));
  m->set_content(text);
  if (absl::GetFlag(FLAGS_max_tokens) > 0)
    req.mutable_sampling()->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  if (absl::GetFlag(FLAGS_temperature) >= 0) {
    req.mutable_sampling()->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  }
  grpc::ClientContext ctx;
  Prepare(ctx);
  const absl::Time start = absl::Now();
  absl::Time first = absl::InfiniteFuture();
  auto reader = stub.Complete(&ctx, req);
  v1::CompleteEvent e;
  v1::TurnStarted started;
  v1::TurnCompleted completed;
  while (reader->Read(&e)) {
    if (e.has_started()) started = e.started();
    if (e.has_chunk()) {
      if (first == absl::InfiniteFuture() && e.chunk().token_ids_size() > 0) first = absl::Now();
      std::fwrite(e.chunk().text().data(), 1, e.chunk().text().size(), stdout);
      std::fflush(stdout);
    }
    if (e.has_completed()) completed = e.completed();
  }
  std::fputc('\n', stdout);
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  const absl::Time end = absl::Now();
  std::fprintf(stderr,
               "[round %llu on %s | prompt %u tokens, cached %u | completion %u tokens (%s) | "
               "ttft %.1f ms, total %.1f ms]\n",
               static_cast<unsigned long long>(completed.committed_round()),
               started.worker_id().c_str(), completed.usage().prompt_tokens(),
               completed.usage().cached_tokens(), completed.usage().completion_tokens(),
               completed.finish_reason().c_str(),
               first == absl::InfiniteFuture() ? 0.0 : absl::ToDoubleMilliseconds(first - start),
               absl::ToDoubleMilliseconds(end - start));
  return 0;
}

int Get(v1::ChatService::Stub& stub) {
  v1::GetConversationRequest req;
  req.set_conversation_id(absl::GetFlag(FLAGS_conversation));
  req.set_cache_salt(absl::GetFlag(FLAGS_salt));
  v1::Conversation conv;
  grpc::ClientContext ctx;
  Prepare(ctx);
  const grpc::Status s = stub.GetConversation(&ctx, req, &conv);
  if (!s.ok()) return Fail(s);
  std::printf("conversation %s: round %llu, %u tokens, worker %s\n", conv.conversation_id().c_str(),
              static_cast<unsigned long long>(conv.committed_round()), conv.num_tokens(),
              conv.worker_id().empty() ? "-" : conv.worker_id().c_str());
  for (const auto& m : conv.messages())
    std::printf("%s: %s\n", m.role().c_str(), m.content().c_str());
  return 0;
}

int Delete(v1::ChatService::Stub& stub) {
  v1::DeleteConversationRequest req;
  req.set_conversation_id(absl::GetFlag(FLAGS_conversation));
  req.set_cache_salt(absl::GetFlag(FLAGS_salt));
  v1::DeleteConversationResponse resp;
  grpc::ClientContext ctx;
  Prepare(ctx);
  const grpc::Status s = stub.DeleteConversation(&ctx, req, &resp);
  if (!s.ok()) return Fail(s);
  std::printf("deleted %s\n", req.conversation_id().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hcctl chat|send|get|delete --conversation ID [--salt S] [--router host:port] [--message "
      "TEXT] "
      "[--api_key KEY]\n  hcctl hash-key [KEY]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() >= 2 && std::string(args[1]) == "hash-key" && args.size() <= 3)
    return HashKey(args);
  if (args.size() != 2 || absl::GetFlag(FLAGS_conversation).empty()) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  const std::string command = args[1];
  hc::TlsChannelConfig tls;
  tls.tls = absl::GetFlag(FLAGS_tls);
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::StatusOr<hc::ChannelSecurity> security = hc::MakeChannelSecurity(tls);
  if (!security.ok()) {
    std::fprintf(stderr, "error: TLS: %s\n", std::string(security.status().message()).c_str());
    return 2;
  }
  grpc::ChannelArguments channel_args;
  security->Apply(&channel_args);
  auto stub = v1::ChatService::NewStub(
      grpc::CreateCustomChannel(absl::GetFlag(FLAGS_router), security->credentials, channel_args));
  if (command == "send") {
    if (absl::GetFlag(FLAGS_message).empty()) {
      std::fprintf(stderr, "send needs --message\n");
      return 2;
    }
    return Send(*stub, absl::GetFlag(FLAGS_message));
  }
  if (command == "chat") {
    const bool tty = ::isatty(0);
    std::string line;
    int rc = 0;
    while (true) {
      if (tty) std::fputs("> ", stderr);
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      rc = Send(*stub, line);
    }
    return rc;
  }
  if (command == "get") return Get(*stub);
  if (command == "delete") return Delete(*stub);
  std::fprintf(stderr, "unknown command '%s' (chat, send, get, delete)\n", command.c_str());
  return 2;
}
