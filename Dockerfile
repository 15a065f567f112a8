# syntax=docker/dockerfile:1
# pdserve in one image: the router, both workers and the client, CPU-only (-DPDSERVE_CUDA=OFF).
# The command chooses the role (docs/kubernetes.md):
#   docker build -t pdserve:latest .
#   docker run pdserve:latest pdserve-router --listen 0.0.0.0:50051 --http-listen 0.0.0.0:8000 \
#       --model /models/SmolLM2-135M-Instruct.Q4_1.gguf
#   docker run pdserve:latest pdserve-decode-worker --listen 0.0.0.0:50053 --router ROUTER:50051 ...
#   docker run pdserve:latest pdserve-client --router ROUTER:50051 --prompt "Hello"
# The binaries run as the unprivileged user pdserve (uid 10001); models come from a volume.

ARG DEBIAN_RELEASE=bookworm
# The runtime stage's packages: the Debian 12 packages that own the shared libraries the four
# binaries load (ldd; dpkg -S), besides libc6 and libgcc-s1, which every Debian image has. The
# build stage checks that this list covers them (a new library dependency fails the build here,
# and tests/deploy/test_dockerfile.py in CI).
ARG RUNTIME_PACKAGES="libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libc-ares2 libre2-9 \
libssl3 libutf8proc2 libxxhash0 libstdc++6 zlib1g libprometheus-cpp-core1.0"

# ---- build ----------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# The build packages are deploy/install-deps.sh's own list (its debian_packages array, read from
# the script so that the two cannot drift); python3 because CMake looks for it (for the tests).
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN eval "$(sed -n '/^debian_packages=(/,/^)/p' deploy/install-deps.sh)" \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${debian_packages[@]}" python3 \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN PDSERVE_BUILD_DIR=/src/build deploy/build.sh -DPDSERVE_CUDA=OFF
ARG RUNTIME_PACKAGES
RUN binaries="build/router/pdserve-router build/prefill_node/pdserve-prefill-worker \
      build/decode_node/pdserve-decode-worker build/cli/pdserve-client"; \
    needed=$(ldd $binaries | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | \
      while read -r lib; do \
        dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || dpkg -S "${lib#/usr}"; \
      done | cut -d: -f1 | sort -u); \
    missing=$(comm -23 <(echo "$needed") <(tr ' ' '\n' <<<"$RUNTIME_PACKAGES libc6 libgcc-s1" | sort -u)); \
    if [ -n "$missing" ]; then \
      echo "Dockerfile: add to RUNTIME_PACKAGES (the binaries load their libraries): $missing" >&2; \
      exit 1; \
    fi

# ---- runtime --------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG RUNTIME_PACKAGES
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pdserve \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pdserve
COPY --from=build /src/build/router/pdserve-router /src/build/prefill_node/pdserve-prefill-worker \
     /src/build/decode_node/pdserve-decode-worker /src/build/cli/pdserve-client /usr/local/bin/
# Every binary loads and answers --help here: a library missing from RUNTIME_PACKAGES fails now.
RUN for binary in pdserve-router pdserve-prefill-worker pdserve-decode-worker pdserve-client; do \
      "$binary" --help >/dev/null || exit 1; \
    done
USER 10001:10001
# The router's gRPC and OpenAI HTTP ports; workers listen where their --listen says.
EXPOSE 50051 8000
CMD ["pdserve-router", "--help"]
