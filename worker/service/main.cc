// hc-worker: one engine (scheduler, both cache groups, hybrid model, commit)
// behind the internal WorkerService, with health, metrics and, when asked
// for, reflection.
//
// Security: with --tls_cert/--tls_key the gRPC port speaks TLS only; with
// --peer_ca too, only clients presenting a certificate signed by that CA (the
// routers) complete the handshake, so nobody else can call Execute, Release,
// Load or Drain. The kubelet's probes, which cannot present certificates,
// use --health_port (plaintext, grpc.health.v1 only).
//
// Start-up order (each step relies on the ones before it):
//   1. InitProcess: flags; SIGINT/SIGTERM blocked before any thread starts,
//      so a signal during start-up (e.g. while the model loads) stays pending
//      until step 7 and gets the normal drain, not a kill. Then the server
//      options (flags, TLS files checked): a mistake there ends start-up
//      before the model loads.
//   2. Metrics registry and WorkerMetrics: the engine feeds them, so they
//      are declared first and outlive it.
//   3. WorkerStack: model, caches and the engine thread.
//   4. The metrics HTTP server.
//   5. HealthOnDrain, then the WorkerService, whose Drain reports through it.
//      Both are declared before the gRPC server, so they outlive it
//      (common/server.h: a service must outlive its server; reactors use the
//      service's options until the server has stopped).
//   6. GrpcServer::Start: from here RPCs arrive on gRPC threads, Drain
//      included. RPC threads share nothing with main that is assigned after
//      this point, except through HealthOnDrain's mutex: Attach applies a
//      Drain that came before main held the server (Start sets SERVING last).
//      Then the shutdown drain hook.
//   7. Wait for SIGINT/SIGTERM.
// Shutdown order:
//   1. GrpcServer::Shutdown: health NOT_SERVING, the drain hook (Engine::Drain:
//      new turns get UNAVAILABLE), no new calls; in-flight turns get
//      --drain_timeout, then are cancelled. It returns once every call is
//      done. The engine keeps running meanwhile: it is what finishes them.
//   2. HealthOnDrain::Detach, then Engine::Stop (no turn is left by now).
//   3. Scope exit destroys the rest in reverse order: server, service, health
//      link, metrics server, stack (engine already stopped), metrics, registry.
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "worker/engine/worker_stack.h"
#include "worker/service/health_on_drain.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_service.h"

ABSL_FLAG(int32_t, port, 50061, "gRPC port of the WorkerService (0 picks a free port)");
ABSL_FLAG(int32_t, metrics_port, 9101, "Prometheus /metrics port (0 picks a free port)");
ABSL_FLAG(std::string, worker_id, "", "Id reported to the router (default: hostname)");
ABSL_FLAG(std::string, model, "synthetic:tiny",
          "Bamba checkpoint directory, or synthetic:tiny|small (generated once into a cache dir)");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or auto");
ABSL_FLAG(std::string, dtype, "auto",
          "Weight storage: auto (the checkpoint's torch_dtype; float16 loads as float32), "
          "float32 or bfloat16");
ABSL_FLAG(std::string, kv_dtype, "auto", "KV cache storage: auto (= --dtype), float32 or bfloat16");
ABSL_FLAG(int32_t, tp, 1, "Tensor-parallel ranks");
ABSL_FLAG(int32_t, threads, 0,
          "CPU backend: intra-op threads of the worker, all ranks together (split evenly over "
          "--tp ranks, each at least 1). 0: every CPU this process may use (affinity mask, "
          "capped by the cgroup CPU quota). Ignored by the CUDA backend");
ABSL_FLAG(int32_t, kv_blocks, 0, "KV cache blocks (0: derive from --kv_cache_bytes)");
ABSL_FLAG(int64_t, kv_cache_bytes, 256ll << 20, "KV cache size in bytes when --kv_blocks is 0");
ABSL_FLAG(int32_t, mamba_slots, 64,
          "Mamba state slots (committed conversations, their snapshots, running turns)");
ABSL_FLAG(int32_t, block_size, 16, "Tokens per KV block");
ABSL_FLAG(int32_t, max_batch_tokens, 512, "Token budget of one engine step (chunked prefill)");
ABSL_FLAG(int32_t, max_running, 64, "Turns running at once");
ABSL_FLAG(
    int32_t, max_waiting, 256,
    "Turns waiting for admission; Execute answers RESOURCE_EXHAUSTED beyond it (0: unbounded)");
ABSL_FLAG(int64_t, grpc_memory_quota, 1ll << 30,
          "gRPC ResourceQuota in bytes: bounds the memory of in-flight calls and transport "
          "buffers, e.g. under a flood of streams (0: none)");
ABSL_FLAG(int32_t, max_model_len, 0,
          "Context limit in tokens (0: the model's max_position_embeddings)");
ABSL_FLAG(std::string, peer_ca, "",
          "PEM CA certificate(s): with --tls_cert/--tls_key, the gRPC port requires every client "
          "(the routers) to present a certificate signed by one of them (mutual TLS); others fail "
          "the handshake. Re-read every --tls_refresh_interval");

namespace {

std::string DefaultWorkerId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) return "worker";
  return host;
}

int Run() {
  // Flags and certificate files first: a mistake there is reported at once,
  // not after minutes of loading a model.
  absl::StatusOr<hc::ServerOptions> server_options =
      hc::ServerOptionsFromFlags(absl::GetFlag(FLAGS_port), absl::GetFlag(FLAGS_peer_ca));
  if (!server_options.ok()) {
    HC_LOG(ERROR) << server_options.status();
    return 2;
  }
  server_options->memory_quota_bytes = absl::GetFlag(FLAGS_grpc_memory_quota);
  auto registry = std::make_shared<prometheus::Registry>();
  hc::worker::WorkerMetrics metrics(*registry);

  hc::engine::WorkerStackOptions so;
  so.model = absl::GetFlag(FLAGS_model);
  so.device = absl::GetFlag(FLAGS_device);
  so.dtype = absl::GetFlag(FLAGS_dtype);
  so.kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  so.tp = absl::GetFlag(FLAGS_tp);
  so.threads = absl::GetFlag(FLAGS_threads);
  so.kv_blocks = absl::GetFlag(FLAGS_kv_blocks);
  so.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  so.mamba_slots = absl::GetFlag(FLAGS_mamba_slots);
  so.block_size = absl::GetFlag(FLAGS_block_size);
  so.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  so.max_running = absl::GetFlag(FLAGS_max_running);
  so.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  so.max_model_len = absl::GetFlag(FLAGS_max_model_len);
  so.metrics = &metrics;
  auto stack = hc::engine::WorkerStack::Create(so);
  if (!stack.ok()) {
    HC_LOG(ERROR) << "cannot start the worker: " << stack.status();
    return 1;
  }
  metrics.SetIntraOpThreads((*stack)->rank_threads());

  std::string worker_id = absl::GetFlag(FLAGS_worker_id);
  if (worker_id.empty()) worker_id = DefaultWorkerId();
  auto metrics_server = hc::MetricsServer::Start(hc::MetricsHostFromFlags(),
                                                 absl::GetFlag(FLAGS_metrics_port), registry);
  if (!metrics_server.ok()) {
    HC_LOG(ERROR) << metrics_server.status();
    return 1;
  }

  hc::engine::Engine* engine = &(*stack)->engine();
  hc::worker::HealthOnDrain health;
  hc::worker::WorkerServiceImpl service({
      .worker_id = worker_id,
      .engine = engine,
      .max_model_len = (*stack)->max_model_len(),
      .vocab_size = (*stack)->config().vocab_size,
      .on_drain = [&health] { health.Drain(); },
  });
  absl::StatusOr<std::unique_ptr<hc::GrpcServer>> server = hc::GrpcServer::Start(
      *server_options, {{&service, hybridcache::v1::WorkerService::service_full_name()}});
  if (!server.ok()) {
    HC_LOG(ERROR) << server.status();
    return 1;
  }
  health.Attach(server->get());
  // Shutdown drains: new turns are refused while running ones finish.
  (*server)->SetDrainHook([engine] { engine->Drain(); });
  HC_LOG(INFO) << "hc-worker " << worker_id << " listening on " << (*server)->address()
               << " metrics " << (*metrics_server)->endpoint()
               << hc::ListeningSuffix(**server, absl::GetFlag(FLAGS_peer_ca));

  const int sig = hc::WaitForShutdownSignal();
  HC_LOG(INFO) << "signal " << sig << ": draining";
  (*server)->Shutdown();
  health.Detach();
  engine->Stop();
  HC_LOG(INFO) << "hc-worker stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  hc::InitProcess(argc, argv,
                  "hc-worker: the HybridCache GPU/CPU worker (engine, caches, model) over gRPC");
  return Run();
}
