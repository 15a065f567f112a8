#!/usr/bin/env bash
# Installs everything the build and the tests need on Debian 12: the Debian packages (apt-get,
# through sudo unless root) and the pinned PyPI packages for the python3 on PATH. Idempotent and
# quiet; safe to run again.
#
# Usage: deploy/install-deps.sh       (no arguments; -h, --help prints this)
# Environment: none of its own (apt-get and pip read theirs).
# Exit status: 0 when everything is installed, 2 for bad usage, else apt-get's or pip's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_only_help "$@"
[ $# -eq 0 ] || usage_error "takes no arguments"

debian_packages=(
  cmake ninja-build g++ pkg-config clang libclang-rt-14-dev unzip
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libxxhash-dev libutf8proc-dev nlohmann-json3-dev libboost1.81-dev prometheus-cpp-dev
  util-linux procps iproute2
)
python_packages=(
  numpy==2.4.6 gguf==0.19.0 transformers==5.24.0 tokenizers==0.23.3 jinja2==3.1.6
  pytest==8.4.2
  grpcio==1.76.0 grpcio-tools==1.76.0
  openai==3.51.0 prometheus-client==0.26.0 kubernetes-validate==1.37.0 pyyaml==6.0.3
)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  "${python_packages[@]}"
