# syntax=docker/dockerfile:1
# hc-router and hcctl on Debian bookworm-slim (CPU only).
# Build from the repository root:
#   docker build -f deploy/docker/router.Dockerfile -t hybridcache/hc-router:0.1.0 .
ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---- build: the project's own dependency script, then only the two targets.
FROM ${DEBIAN_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DHC_WITH_CUDA=OFF \
 && cmake --build build --target hc-router hcctl \
 && strip build/bin/hc-router build/bin/hcctl \
 && mkdir -p /out \
 && cp build/bin/hc-router build/bin/hcctl /out/
# The Debian packages that own the shared libraries the binaries load: the
# runtime stage installs exactly these (no -dev packages, no compilers).
RUN deploy/docker/runtime-packages.sh /out/hc-router /out/hcctl >/out/runtime-packages.txt

# ---- runtime
FROM ${DEBIAN_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin hc
COPY --from=build /out/hc-router /out/hcctl /usr/local/bin/
USER 10001:10001
# gRPC (ChatService, grpc.health.v1; reflection with --reflection) and Prometheus /metrics.
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/hc-router"]
CMD ["--host=0.0.0.0", "--port=50051", "--metrics_port=9090"]
