# gpu-worker image. Build from the repository root:
#   docker build -f infra/gpu-worker.Dockerfile -t imgpipe-gpu-worker .
# Stage 1 builds with the plain Rust toolchain: cudarc loads CUDA at run time, so no CUDA SDK is needed
# to compile. Stage 2 is NVIDIA's CUDA *runtime* image (driver-facing libraries: cudart, NVRTC, nvJPEG),
# no compiler, no SDK; the host's driver is mounted by the ECS GPU agent / nvidia-container-toolkit.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p imgpipe-gpu-worker \
 && cp target/release/gpu-worker /gpu-worker

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 imgpipe
COPY --from=build /gpu-worker /usr/local/bin/gpu-worker
USER imgpipe
EXPOSE 8080
ENV RUST_LOG=info IMGPIPE_BACKEND=auto IMGPIPE_HEALTH_ADDR=0.0.0.0:8080
ENTRYPOINT ["/usr/local/bin/gpu-worker", "--json-logs"]
