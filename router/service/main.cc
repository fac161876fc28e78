// hc-router: the public ChatService in front of the workers.
//
//   hc-router --workers 10.0.0.1:50052,10.0.0.2:50052 --model bytes
//   hc-router --workers_dns hc-worker.default.svc:50052 --ledger redis://redis:6379
//
// Prints "hc-router listening on HOST:PORT metrics HOST:MPORT" once serving
// (ports resolved, so --port 0 / --metrics_port 0 work for tests), followed
// by " health HOST:HPORT" with --health_port and " tls" / " mtls" with TLS.
// SIGTERM or SIGINT drains in-flight turns (--drain_timeout) and exits 0. With
// --api_keys_file, SIGHUP reloads the keys file (so does any change to it).
//
// Security (all off by default; plaintext on loopback):
//   public port   --tls_cert/--tls_key [--tls_client_ca: require client certs]
//   to workers    --worker_ca (verify the workers' certificates) and
//                 --worker_tls_cert/--worker_tls_key (the router's client
//                 certificate, which workers started with --peer_ca require);
//                 --worker_server_name when workers are dialled by IP
//   probes        --health_port: plaintext grpc.health.v1 only
// Every certificate file is re-read every --tls_refresh_interval.
//
// Start-up order: codec, ledger (replayed), worker pool (first probe round,
// then background refresh), metrics, ChatService, and last the gRPC server, so
// nothing can call in before its dependencies exist. Shutdown runs in reverse
// by scope: the server drains and stops first (no new calls, running turns
// get --drain_timeout, then are cancelled), then the ChatService, whose
// destructor waits until every turn object is gone (a turn outlives its client
// stream until its worker call and ledger operations have ended), then the
// pool, the ledger (file: flushed and synced) and metrics.
#include <signal.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/tls.h"
#include "router/http/openai_server.h"
#include "router/ledger/ledger.h"
#include "router/routing/worker_pool.h"
#include "router/service/chat_service.h"
#include "router/service/text_codec.h"
#include "router/tenancy/api_keys.h"
#include "router/tenancy/quotas.h"
#include "router/tenancy/redis_quotas.h"

ABSL_FLAG(int32_t, port, 50051, "ChatService port (0 picks a free one)");
// Shared flags of common/process.cc.
ABSL_DECLARE_FLAG(std::string, host);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);

ABSL_FLAG(int32_t, http_port, 0,
          "OpenAI-compatible HTTP API port on --host (docs/http-api.md); HTTPS with "
          "--tls_cert/--tls_key. 0: off");
ABSL_FLAG(std::string, served_model_name, "",
          "Model name of the HTTP API (/v1/models; requests must name it); empty: --model");
ABSL_FLAG(int64_t, http_max_body_bytes, 4 << 20,
          "Largest HTTP request body; larger ones are refused with 413");
ABSL_FLAG(std::string, http_response_id_secret_file, "",
          "File whose contents sign /v1/responses ids (share it between routers so that their "
          "ids work on every one); empty: a random secret per process");
ABSL_FLAG(int32_t, metrics_port, 9090, "Prometheus /metrics port (0 picks a free one)");
ABSL_FLAG(std::string, workers, "", "Comma-separated worker addresses host:port");
ABSL_FLAG(std::string, workers_dns, "",
          "host:port of a DNS name listing workers (e.g. a headless Service), re-resolved "
          "every --probe_interval");
ABSL_FLAG(std::string, model, "bytes",
          "Tokenizer and chat template: a checkpoint directory, or 'bytes' (ByteTextCodec)");
ABSL_FLAG(std::string, ledger, "memory", "Ledger backend: memory, or redis://host:port[/db]");
ABSL_FLAG(std::string, ledger_dir, "",
          "With the memory ledger: directory of its append-only log and snapshot (durable)");
ABSL_FLAG(std::string, ledger_fsync, "interval", "File ledger fsync: always, interval, never");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(30),
          "Lease of a turn, renewed every lease_ttl/3 while it runs; the lease of a crashed "
          "router's turn expires after this and can be taken over");
ABSL_FLAG(int32_t, tokenizer_threads, 0,
          "Threads that tokenize turns, off the gRPC threads (0: one per CPU core)");
ABSL_FLAG(absl::Duration, conversation_ttl, absl::Hours(24 * 7),
          "Conversations without a turn for this long are forgotten (their next turn starts "
          "over from the client's full history); 0 keeps them forever");
ABSL_FLAG(int64_t, max_conversations_per_salt, 0,
          "Conversations one cache_salt may hold; a new one past it is refused with "
          "RESOURCE_EXHAUSTED (0: unlimited)");
ABSL_FLAG(int64_t, max_inflight_turns, 1024,
          "Turns in flight in this router; past it turns are refused with RESOURCE_EXHAUSTED "
          "(0: unbounded)");
ABSL_FLAG(std::string, api_keys_file, "",
          "JSON file of API keys (SHA-256 hashes) bound to tenants, salts and quotas (README: "
          "API keys); calls then need 'authorization: Bearer <key>'. Reloaded on SIGHUP or when "
          "it changes. Empty: no authentication");
ABSL_FLAG(int32_t, max_model_len, 0, "Context limit; 0 uses the workers' reported max_model_len");
ABSL_FLAG(absl::Duration, probe_interval, absl::Seconds(1), "Worker health/load polling interval");
ABSL_FLAG(int32_t, overload_waiting, 16,
          "A worker with this many waiting requests is overloaded: conversations move off it");
ABSL_FLAG(int32_t, max_attempts, 3,
          "Attempts per turn when a worker answers UNAVAILABLE, ABORTED or RESOURCE_EXHAUSTED "
          "(each retry may pick another worker)");
ABSL_FLAG(int32_t, unhealthy_after, 3,
          "A worker becomes unhealthy after this many consecutive failed probes (a failed call "
          "takes it out at once)");
ABSL_FLAG(int32_t, max_inflight_per_worker, 0,
          "At most this many of this router's turns in flight per worker; new turns go to workers "
          "with room, RESOURCE_EXHAUSTED when none has (0: no cap; workers' own max_waiting "
          "applies regardless)");

ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificate(s): with --tls_cert/--tls_key, clients of the public port must "
          "present a certificate signed by one of them (mutual TLS)");
ABSL_FLAG(std::string, worker_ca, "",
          "PEM CA certificate(s) the workers' certificates must chain to: connect to workers over "
          "TLS (empty, and no --worker_tls_cert: plaintext)");
ABSL_FLAG(std::string, worker_tls_cert, "",
          "PEM client certificate the router presents to workers (those started with --peer_ca "
          "require one); with --worker_tls_key");
ABSL_FLAG(std::string, worker_tls_key, "", "PEM private key of --worker_tls_cert");
ABSL_FLAG(std::string, worker_server_name, "",
          "Name the workers' certificates must carry, instead of the dialled host (workers are "
          "dialled by IP, e.g. resolved from --workers_dns; name their Service here)");

namespace hc::router {
namespace {

extern "C" void ReloadApiKeysOnSignal(int) { ApiKeyStore::RequestReloadFromSignal(); }

int Main(int argc, char** argv) {
  InitProcess(argc, argv, "hc-router: HybridCache ChatService router. See --help.");

  absl::StatusOr<std::unique_ptr<TextCodec>> codec = MakeTextCodec(absl::GetFlag(FLAGS_model));
  if (!codec.ok()) {
    HC_LOG(ERROR) << codec.status();
    return 2;
  }

  // Keys before the ledger: the ledger asks them for tenants' conversation caps.
  std::unique_ptr<ApiKeyStore> api_keys;
  if (const std::string path = absl::GetFlag(FLAGS_api_keys_file); !path.empty()) {
    absl::StatusOr<std::unique_ptr<ApiKeyStore>> keys = ApiKeyStore::Open({.path = path});
    if (!keys.ok()) {
      HC_LOG(ERROR) << keys.status();
      return 2;
    }
    api_keys = *std::move(keys);
    HC_LOG(INFO) << "API keys: " << api_keys->current()->size() << " keys from " << path;
    struct sigaction sa = {};
    sa.sa_handler = ReloadApiKeysOnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, nullptr);
    api_keys->StartWatching();
  }

  LedgerOptions lo;
  lo.backend = absl::GetFlag(FLAGS_ledger);
  if (api_keys != nullptr) {
    lo.tenant_conversation_limit = [keys = api_keys.get()](std::string_view tenant) {
      return keys->LimitsOf(tenant).max_conversations;
    };
  }
  lo.dir = absl::GetFlag(FLAGS_ledger_dir);
  if (!ParseFsyncPolicy(absl::GetFlag(FLAGS_ledger_fsync), &lo.fsync)) {
    HC_LOG(ERROR) << "--ledger_fsync must be always, interval or never";
    return 2;
  }
  lo.conversation_ttl = absl::GetFlag(FLAGS_conversation_ttl);
  if (lo.conversation_ttl < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_max_conversations_per_salt) < 0) {
    HC_LOG(ERROR) << "--conversation_ttl and --max_conversations_per_salt must not be negative";
    return 2;
  }
  lo.max_conversations_per_salt =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_conversations_per_salt));
  absl::StatusOr<std::unique_ptr<ConversationLedger>> ledger = OpenLedger(lo);
  if (!ledger.ok()) {
    HC_LOG(ERROR) << "ledger: " << ledger.status();
    return 2;
  }

  // Quotas are shared through Redis when the ledger is there, else local to
  // this router (router/tenancy/quotas.h).
  std::unique_ptr<TenantQuotas> quotas;
  if (api_keys != nullptr) {
    if (lo.backend.rfind("redis://", 0) == 0) {
      absl::StatusOr<std::unique_ptr<TenantQuotas>> q = OpenRedisQuotas(
          {.url = lo.backend, .prefix = lo.redis_prefix, .timeout = lo.redis_timeout});
      if (!q.ok()) {
        HC_LOG(ERROR) << "tenant quotas: " << q.status();
        return 2;
      }
      quotas = *std::move(q);
    } else {
      quotas = std::make_unique<LocalQuotas>();
    }
  }

  // Before the pool probes the workers: bad flags or certificate files end
  // start-up at once.
  absl::StatusOr<ServerOptions> server_options =
      ServerOptionsFromFlags(absl::GetFlag(FLAGS_port), absl::GetFlag(FLAGS_tls_client_ca));
  if (!server_options.ok()) {
    HC_LOG(ERROR) << server_options.status();
    return 2;
  }
  ServerOptions& so = *server_options;
  WorkerPoolOptions po;
  for (absl::string_view w :
       absl::StrSplit(absl::GetFlag(FLAGS_workers), ',', absl::SkipWhitespace())) {
    po.static_workers.emplace_back(w);
  }
  po.dns_name = absl::GetFlag(FLAGS_workers_dns);
  if (po.static_workers.empty() && po.dns_name.empty()) {
    HC_LOG(ERROR) << "no workers: set --workers and/or --workers_dns";
    return 2;
  }
  po.overload_waiting = static_cast<uint32_t>(absl::GetFlag(FLAGS_overload_waiting));
  po.unhealthy_after = absl::GetFlag(FLAGS_unhealthy_after);
  if (po.unhealthy_after < 1) {
    HC_LOG(ERROR) << "--unhealthy_after must be at least 1";
    return 2;
  }
  if (absl::GetFlag(FLAGS_max_inflight_per_worker) < 0) {
    HC_LOG(ERROR) << "--max_inflight_per_worker must be 0 (no cap) or more";
    return 2;
  }
  po.max_inflight_per_worker = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_inflight_per_worker));
  po.refresh_interval = absl::GetFlag(FLAGS_probe_interval);
  po.seed = std::random_device()();
  TlsChannelConfig worker_tls;
  worker_tls.ca_file = absl::GetFlag(FLAGS_worker_ca);
  worker_tls.cert_file = absl::GetFlag(FLAGS_worker_tls_cert);
  worker_tls.key_file = absl::GetFlag(FLAGS_worker_tls_key);
  worker_tls.server_name = absl::GetFlag(FLAGS_worker_server_name);
  worker_tls.refresh_interval = TlsRefreshIntervalFromFlags();
  if (worker_tls.enabled() && worker_tls.ca_file.empty()) {
    // The workers' certificates come from a private CA; system roots would
    // accept any publicly trusted certificate for the name.
    HC_LOG(ERROR) << "--worker_tls_cert/--worker_server_name need --worker_ca";
    return 2;
  }
  absl::StatusOr<ChannelSecurity> worker_security = MakeChannelSecurity(worker_tls);
  if (!worker_security.ok()) {
    HC_LOG(ERROR) << "worker TLS: " << worker_security.status();
    return 2;
  }
  po.channel_factory = NewWorkerChannelFactory(*std::move(worker_security));
  WorkerPool pool(po, NewGrpcProber(std::min(po.refresh_interval, absl::Seconds(2))),
                  NewDnsResolver());
  // Before the port opens, so that a router whose workers are up is ready at once.
  pool.Refresh();
  pool.StartBackgroundRefresh();

  // Readiness: health stays NOT_SERVING until a worker has been healthy.
  so.start_serving = false;
  auto registry = std::make_shared<prometheus::Registry>();
  RouterMetrics metrics(*registry);
  absl::StatusOr<std::unique_ptr<MetricsServer>> metrics_server =
      MetricsServer::Start(MetricsHostFromFlags(), absl::GetFlag(FLAGS_metrics_port), registry);
  if (!metrics_server.ok()) {
    HC_LOG(ERROR) << "metrics: " << metrics_server.status();
    return 1;
  }

  char host[256] = "router";
  ::gethostname(host, sizeof(host) - 1);
  ChatServiceOptions co;
  co.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  if (co.lease_ttl < absl::Milliseconds(30)) {
    HC_LOG(ERROR) << "--lease_ttl must be at least 30ms";
    return 2;
  }
  co.max_inflight_turns = absl::GetFlag(FLAGS_max_inflight_turns);
  co.work_threads = absl::GetFlag(FLAGS_tokenizer_threads);
  co.max_model_len = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_model_len));
  co.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  co.router_id = absl::StrCat(host, ":", ::getpid(), ":", std::random_device()() % 100000);
  co.api_keys = api_keys.get();
  co.quotas = quotas.get();
  ChatServiceImpl service(co, ledger->get(), &pool, codec->get(), &metrics);

  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start(so, {{&service, hybridcache::v1::ChatService::service_full_name()}});
  if (!server.ok()) {
    HC_LOG(ERROR) << server.status();
    return 1;
  }
  // The pool's callback may run on its refresh thread at any time until the
  // pool is destroyed (after the server): it reaches the server only through
  // this shared state, which the shutdown path clears first, so that it can
  // neither turn health back to SERVING during the drain nor touch a destroyed
  // server.
  struct Readiness {
    absl::Mutex mu;
    GrpcServer* server ABSL_GUARDED_BY(mu) = nullptr;
  };
  auto readiness = std::make_shared<Readiness>();
  {
    absl::MutexLock lock(&readiness->mu);
    readiness->server = server->get();
  }
  pool.WhenFirstHealthy([readiness] {
    absl::MutexLock lock(&readiness->mu);
    if (readiness->server == nullptr) return;
    readiness->server->SetServing(true);
    HC_LOG(INFO) << "a worker is healthy: health SERVING";
  });
  if (!pool.ever_healthy())
    HC_LOG(WARNING) << "no worker healthy yet: health NOT_SERVING until one is";
  // The HTTP front door: a client of the ChatService above, in-process.
  std::unique_ptr<http::OpenAiServer> openai;
  std::string http_suffix;
  if (const int http_port = absl::GetFlag(FLAGS_http_port); http_port != 0) {
    http::OpenAiServerOptions ho;
    ho.host = absl::GetFlag(FLAGS_host);
    ho.port = http_port;
    ho.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
    ho.tls_key_file = absl::GetFlag(FLAGS_tls_key);
    ho.model_name = absl::GetFlag(FLAGS_served_model_name);
    if (ho.model_name.empty()) ho.model_name = absl::GetFlag(FLAGS_model);
    if (absl::GetFlag(FLAGS_http_max_body_bytes) < 1024) {
      HC_LOG(ERROR) << "--http_max_body_bytes must be at least 1024";
      return 2;
    }
    ho.max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_http_max_body_bytes));
    if (const std::string f = absl::GetFlag(FLAGS_http_response_id_secret_file); !f.empty()) {
      absl::StatusOr<std::string> secret = ReadFileToString(f);
      if (!secret.ok() || secret->empty()) {
        HC_LOG(ERROR) << "--http_response_id_secret_file: cannot read a secret from " << f;
        return 2;
      }
      ho.response_id_secret = *std::move(secret);
    }
    absl::StatusOr<std::unique_ptr<http::OpenAiServer>> started =
        http::OpenAiServer::Start(ho, (*server)->InProcessChannel(), codec->get(), &pool);
    if (!started.ok()) {
      HC_LOG(ERROR) << "HTTP API: " << started.status();
      return 1;
    }
    openai = *std::move(started);
    http_suffix = absl::StrCat(" http ", ho.host, ":", openai->port());
  }
  HC_LOG(INFO) << "hc-router listening on " << (*server)->address() << " metrics "
               << (*metrics_server)->endpoint()
               << ListeningSuffix(**server, absl::GetFlag(FLAGS_tls_client_ca)) << http_suffix;

  // Values that are read, not counted here: conversations, worker health and
  // the ledger's expiry/cap totals.
  absl::Mutex stats_mu;
  bool stopping = false;
  std::thread stats([&] {
    while (true) {
      if (absl::StatusOr<uint64_t> n = (*ledger)->CountConversations(); n.ok()) {
        metrics.SetConversations(static_cast<double>(*n));
      }
      const LedgerCounters lc = (*ledger)->counters();
      metrics.SetLedgerTotals(lc.conversations_expired, lc.conversations_refused);
      const WorkerPool::Counts c = pool.counts();
      metrics.SetWorkers(c.healthy, c.unhealthy);
      absl::MutexLock lock(&stats_mu);
      if (stats_mu.AwaitWithTimeout(absl::Condition(&stopping), absl::Seconds(2))) return;
    }
  });

  const int sig = WaitForShutdownSignal();
  HC_LOG(INFO) << "signal " << sig << ": shutting down";
  {
    absl::MutexLock lock(&readiness->mu);
    readiness->server = nullptr;
  }
  // Drains HTTP turns too (they are calls of the server); new HTTP
  // requests meanwhile get 503.
  (*server)->Shutdown();
  openai.reset();
  {
    absl::MutexLock lock(&stats_mu);
    stopping = true;
  }
  stats.join();
  return 0;
}

}  // namespace
}  // namespace hc::router

int main(int argc, char** argv) { return hc::router::Main(argc, argv); }
