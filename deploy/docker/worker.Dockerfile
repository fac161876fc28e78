# syntax=docker/dockerfile:1
# hc-worker: built on an NVIDIA CUDA devel image (Ubuntu), run on the matching
# CUDA runtime image. Also runs without a GPU (--device=cpu): the binary loads
# the CUDA runtime library, and the driver only when a device is used.
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t hybridcache/hc-worker:0.1.0 .
#   (--build-arg CUDA_ARCHS="80;90" for A100 and H100/H200)
ARG CUDA_VERSION=13.0.0
ARG UBUNTU_VERSION=24.04

# ---- build
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
ARG CUDA_ARCHS=90
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DHC_WITH_CUDA=ON -DHC_WITH_NCCL=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}" \
 && cmake --build build --target hc-worker \
 && strip build/bin/hc-worker \
 && mkdir -p /out \
 && cp build/bin/hc-worker /out/
# Packages owning the shared libraries hc-worker loads (CUDA libraries included;
# libcuda.so.1 is the driver's and comes from the host at run time).
RUN deploy/docker/runtime-packages.sh /out/hc-worker >/out/runtime-packages.txt

# ---- runtime
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin hc
COPY --from=build /out/hc-worker /usr/local/bin/
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
# gRPC (WorkerService, grpc.health.v1; reflection with --reflection) and Prometheus /metrics.
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/hc-worker"]
CMD ["--host=0.0.0.0", "--port=50051", "--metrics_port=9090", "--device=auto"]
