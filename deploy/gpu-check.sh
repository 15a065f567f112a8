#!/usr/bin/env bash
# GPU checks in two halves, for a project built on machines with no GPU.
#
#   deploy/gpu-check.sh --prepare [--build-dir DIR] [--bundle DIR] [--jobs N]
#       Here (the build machine): configures DIR (default build-gpu-check) with -DPDSERVE_CUDA=ON,
#       builds only the GPU test and benchmark binaries (listed by CMake in
#       DIR/gpu-check-manifest.txt), and bundles them into the bundle folder (default .gpu/):
#       bin/ (the binaries), lib/ (every shared library they need that is neither glibc's nor
#       the CUDA toolkit's), models/ (stories260K.*, tok512.bin) and golden/ (from ../shared),
#       bench/ (the PyTorch baseline), manifest.txt.
#
#   deploy/gpu-check.sh --run [--dry-run] [--summary FILE] [--bundle DIR]
#       There (the GPU machine, from the repo root, bundle present): nvidia-smi, every test
#       binary (each under a timeout), pdserve-generate --device cuda on stories260K, the benchmarks, the PyTorch baseline, then, while time is
#       left, compute-sanitizer memcheck over the small attention and KV cases; all within about
#       4 minutes. Writes FILE (default
#       BUNDLE/summary.txt: PASS/FAIL/SKIP per test, the benchmark numbers) and a full log beside
#       it (gpu-check.log). Exits 1 when a test failed (or did not run), else 0.
#       --dry-run (here, and in ctest): does everything but execute GPU binaries: checks that each
#       exists, is executable and resolves its libraries with the bundled LD_LIBRARY_PATH (ldd
#       shows no "not found" except libcuda.so.1, which only the driver provides), and that the
#       baseline script compiles.
#
# Environment: PDSERVE_SHARED_DIR (default ../shared beside the repo) for the models;
# PDSERVE_GPU_CHECK_BUDGET_S (default 225) caps the seconds the --run may take.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=""
dry_run=0
bundle=""
build_dir=""
summary=""
jobs="${PDSERVE_GPU_CHECK_JOBS:-2}"
shared_dir="${PDSERVE_SHARED_DIR:-$root/../shared}"
budget_s="${PDSERVE_GPU_CHECK_BUDGET_S:-225}"

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu-check: ERROR: $*" >&2; exit 2; }
note() { echo "gpu-check: $*"; }

while (($#)); do
  case "$1" in
    --prepare) mode=prepare ;;
    --run) mode=run ;;
    --dry-run) dry_run=1 ;;
    --summary) summary="${2:?--summary needs a file}"; shift ;;
    --bundle) bundle="${2:?--bundle needs a folder}"; shift ;;
    --build-dir) build_dir="${2:?--build-dir needs a folder}"; shift ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
[ -n "$mode" ] || { usage >&2; die "say --prepare or --run"; }
bundle="${bundle:-$root/.gpu}"
build_dir="${build_dir:-$root/build-gpu-check}"
mkdir -p "$bundle" 2>/dev/null || true
bundle="$(cd "$bundle" 2>/dev/null && pwd)" || die "cannot use bundle folder"
summary="${summary:-$bundle/summary.txt}"

# Libraries that the GPU machine provides: glibc, the compiler runtime, the driver and the CUDA
# toolkit. Everything else a binary links is copied into the bundle.
system_lib_re='^(linux-vdso|linux-gate|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libgcc_s\.so|libstdc\+\+\.so|libcuda\.so|libcudart\.so|libcublas\.so|libcublasLt\.so|libnvrtc|libnvJitLink|libcurand|libcufft|libcusparse|libcusolver|libnvidia-)'

# ---------------------------------------------------------------------------------------------
prepare() {
  for tool in cmake ninja ldd; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  if [ ! -f "$build_dir/CMakeCache.txt" ] ||
     ! grep -q '^PDSERVE_CUDA:BOOL=ON' "$build_dir/CMakeCache.txt"; then
    note "configuring $build_dir (-DPDSERVE_CUDA=ON)"
    mkdir -p "$build_dir" || die "cannot create $build_dir"
    cmake -S "$root" -B "$build_dir" -G Ninja -DPDSERVE_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
      >"$build_dir/gpu-check-configure.log" 2>&1 || {
        tail -30 "$build_dir/gpu-check-configure.log" >&2
        die "cmake configure failed (log: $build_dir/gpu-check-configure.log)"
      }
  else
    # Regenerates the manifest if CMakeLists changed.
    cmake "$build_dir" >/dev/null 2>&1 || die "cmake re-configure of $build_dir failed"
  fi
  local manifest="$build_dir/gpu-check-manifest.txt"
  [ -s "$manifest" ] || die "$manifest is missing or empty (is PDSERVE_CUDA ON?)"
  local targets
  targets="$(awk 'NF >= 4 && $1 !~ /^#/ {print $2}' "$manifest" | tr '\n' ' ')"
  note "building: $targets"
  # shellcheck disable=SC2086
  cmake --build "$build_dir" -j "$jobs" --target $targets || die "build failed"

  rm -rf "${bundle:?}/bin" "${bundle:?}/lib" "${bundle:?}/models" "${bundle:?}/bench" "${bundle:?}/golden" \
    "${bundle:?}/manifest.txt"
  mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/models" "$bundle/bench"
  local kind name timeout path
  while read -r kind name timeout path; do
    [ -n "${path:-}" ] && [ "${kind:0:1}" != "#" ] || continue
    [ -x "$path" ] || die "$path was not built"
    cp "$path" "$bundle/bin/$name"
    echo "$kind $name $timeout" >>"$bundle/manifest.txt"
    # Non-system libraries, followed through symlinks (cp -L) under their soname.
    while read -r lib_name lib_path; do
      [ -n "$lib_path" ] || continue
      if [[ "$lib_name" =~ $system_lib_re ]]; then continue; fi
      [ -e "$bundle/lib/$lib_name" ] || cp -L "$lib_path" "$bundle/lib/$lib_name" ||
        die "cannot copy $lib_path"
    done < <(ldd "$path" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
    if ldd "$path" | grep -q "not found"; then
      ldd "$path" | grep "not found" >&2
      die "$name has unresolved libraries here"
    fi
  done <"$manifest"

  # The bundle doubles as the tests' shared folder (PDSERVE_SHARED_DIR): models/ and golden/.
  local m found=0
  for m in "$shared_dir"/models/stories260K.* "$shared_dir"/models/tok512.bin; do
    [ -f "$m" ] || continue
    cp "$m" "$bundle/models/" && found=1
  done
  ((found)) || note "WARNING: no $shared_dir/models/stories260K.* to bundle"
  rm -rf "${bundle:?}/golden"
  cp -r "$shared_dir/golden" "$bundle/golden" || note "WARNING: no $shared_dir/golden to bundle"
  cp "$root/bench/cuda/torch_decode_baseline.py" "$bundle/bench/" ||
    die "bench/cuda/torch_decode_baseline.py is missing"
  {
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
      git -C "$root" diff --quiet 2>/dev/null || echo ' (+ local changes)')"
    echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
    grep '^# ' "$manifest" | sed 's/^# //' 
  } >"$bundle/BUILD_INFO"

  local size_kib
  size_kib="$(du -sk "$bundle" | cut -f1)"
  note "bundle $bundle: $((size_kib / 1024)) MiB ($size_kib KiB), $(ls "$bundle/bin" | wc -l) binaries, libs: $(ls "$bundle/lib" | tr '\n' ' ')"
  ((size_kib < 60 * 1024)) || die "bundle is $((size_kib / 1024)) MiB: over the 60 MiB allowed"
  note "prepared. On the GPU machine: deploy/gpu-check.sh --run [--summary FILE]"
}

# ---------------------------------------------------------------------------------------------
# --run
n_fail=0
gpu_present=0
sanitizer=""
extra_lib_dirs=""
log=""

say() { echo "$*" | tee -a "$summary"; }
elapsed() { echo $((SECONDS - run_start)); }
# Seconds a step may take: its own limit, or what is left of the budget.
time_for() {
  local want=$1 left=$((budget_s - (SECONDS - run_start)))
  ((left < want)) && want=$left
  echo "$want"
}

# Directories that may hold the CUDA toolkit's libraries on the GPU machine, for libraries the
# dynamic linker does not find by itself (cuBLAS with a toolkit outside ld.so.conf).
candidate_lib_dirs() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/local/cuda-*/lib64 /usr/local/cuda-*/lib /usr/local/cuda-*/targets/x86_64-linux/lib \
           /usr/lib/x86_64-linux-gnu /usr/local/lib; do
    [ -d "$d" ] && echo "$d"
  done
  if command -v python3 >/dev/null; then
    # The CUDA libraries pip installs beside PyTorch (nvidia-cublas etc.).
    python3 - 2>/dev/null <<'EOF' || true
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "**", "lib"), recursive=True):
        print(d)
EOF
  fi
}

lib_path_for() { echo "$bundle/lib${extra_lib_dirs:+:$extra_lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }

# Sets `unresolved` to the libraries `bin` cannot resolve (except libcuda.so.1, which only the
# driver provides), after looking for them in candidate_lib_dirs (found ones join extra_lib_dirs).
# Not to be called in a subshell: it updates extra_lib_dirs.
unresolved=""
resolve_libs() {
  local bin=$1 missing lib dir
  missing="$(LD_LIBRARY_PATH="$(lib_path_for)" ldd "$bin" 2>&1 |
             awk '$2 == "=>" && $3 == "not" {print $1}' | grep -v '^libcuda\.so' || true)"
  for lib in $missing; do
    while read -r dir; do
      if [ -e "$dir/$lib" ]; then
        extra_lib_dirs="${extra_lib_dirs:+$extra_lib_dirs:}$dir"
        echo "  found $lib in $dir" >>"$log"
        break
      fi
    done < <(candidate_lib_dirs)
  done
  # Missing libraries ("libx.so => not found") and too old ones ("version `GLIBC_2.34' not
  # found"), in ldd's words.
  unresolved="$(LD_LIBRARY_PATH="$(lib_path_for)" ldd "$bin" 2>&1 | grep 'not found' |
                grep -v 'libcuda\.so\.1 => not found' | sed 's/^[[:space:]]*//; s/ (0x[0-9a-f]*)//' |
                tr '\n' ';' || true)"
}

# Runs one test binary (or a sanitizer over it) and records PASS/FAIL/SKIP.
run_test() {
  local name=$1 limit=$2
  shift 2
  local t out rc start dur status
  t="$(time_for "$limit")"
  if ((t < 5)); then
    say "NOT_RUN $name (time budget spent)"
    n_fail=$((n_fail + 1))
    return
  fi
  out="$(mktemp)"
  start=$SECONDS
  LD_LIBRARY_PATH="$(lib_path_for)" timeout -k 5 "$t" "$@" >"$out" 2>&1
  rc=$?
  dur=$((SECONDS - start))
  case $rc in
    0) status=PASS ;;
    77)
      status=SKIP
      # On a machine with a GPU, a binary that finds none is broken (runtime/driver mismatch).
      if ((gpu_present)); then
        status=FAIL
        echo "(exit 77, 'no usable GPU', although nvidia-smi lists one)" >>"$out"
      fi
      ;;
    124|137) status=FAIL; echo "(timed out after ${t}s)" >>"$out" ;;
    *) status=FAIL ;;
  esac
  { echo "===== $name: $status (rc $rc, ${dur}s)"; cat "$out"; } >>"$log"
  say "$status $name (${dur}s)"
  if [ $status = FAIL ]; then
    n_fail=$((n_fail + 1))
    grep -E '^\[  FAILED|Failure|error|Error|FAIL|timed out' "$out" | head -20 | sed 's/^/    /' |
      tee -a "$summary"
    tail -5 "$out" | sed 's/^/    | /' | tee -a "$summary"
  elif [ $status = SKIP ]; then
    grep -m1 SKIPPED "$out" | sed 's/^/    /' | tee -a "$summary"
  fi
  rm -f "$out"
}

# Runs a benchmark (binary or command) and copies its RESULT lines into the summary.
run_bench() {
  local name=$1 limit=$2
  shift 2
  local t out rc start dur
  t="$(time_for "$limit")"
  if ((t < 10)); then
    say "BENCH_NOT_RUN $name (time budget spent)"
    return
  fi
  out="$(mktemp)"
  start=$SECONDS
  timeout -k 5 "$t" "$@" >"$out" 2>&1
  rc=$?
  dur=$((SECONDS - start))
  { echo "===== bench $name: rc $rc, ${dur}s"; cat "$out"; } >>"$log"
  if ((rc == 0)); then
    say "BENCH_OK $name (${dur}s)"
  elif ((rc == 77)); then
    say "BENCH_SKIP $name ($(grep -m1 SKIPPED "$out"))"
  else
    say "BENCH_FAIL $name (rc $rc, ${dur}s$( ((rc == 124)) && echo ', timed out'))"
    tail -8 "$out" | sed 's/^/    | /' | tee -a "$summary"
  fi
  grep -E '^(RESULT|INFO) ' "$out" | sed 's/^/  /' | tee -a "$summary"
  rm -f "$out"
}

run() {
  local manifest="$bundle/manifest.txt"
  [ -s "$manifest" ] || die "$manifest is missing: run deploy/gpu-check.sh --prepare first (here: the bundle travels to the GPU machine)"
  command -v timeout >/dev/null || die "timeout (coreutils) is not installed"
  mkdir -p "$(dirname "$summary")" || die "cannot create $(dirname "$summary")"
  log="$(dirname "$summary")/gpu-check.log"
  : >"$summary"
  : >"$log"
  run_start=$SECONDS
  # The tests read stories260K and the goldens from the bundle.
  export PDSERVE_SHARED_DIR="$bundle"
  say "pdserve gpu-check $( ((dry_run)) && echo '--dry-run') $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  sed 's/^/  /' "$bundle/BUILD_INFO" 2>/dev/null | tee -a "$summary"

  local kind name timeout
  if ((dry_run)); then
    say "would run: nvidia-smi"
    while read -r kind name timeout; do
      local bin="$bundle/bin/$name"
      if [ ! -f "$bin" ]; then say "FAIL $name: $bin is missing"; n_fail=$((n_fail + 1)); continue; fi
      if [ ! -x "$bin" ]; then say "FAIL $name: not executable"; n_fail=$((n_fail + 1)); continue; fi
      resolve_libs "$bin"
      if [ -n "$unresolved" ]; then
        say "FAIL $name: unresolved libraries: $unresolved"
        n_fail=$((n_fail + 1))
      else
        say "PASS $name: would run ($kind, timeout ${timeout}s); libraries resolve"
      fi
    done <"$manifest"
    if command -v python3 >/dev/null; then
      if python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' \
          "$bundle/bench/torch_decode_baseline.py" 2>>"$log"; then
        say "PASS torch_decode_baseline.py compiles (would run with python3)"
      else
        say "FAIL torch_decode_baseline.py does not compile"
        n_fail=$((n_fail + 1))
      fi
    else
      say "SKIP torch_decode_baseline.py: no python3 here"
    fi
  else
    chmod +x "$bundle"/bin/* 2>/dev/null
    say "--- device"
    if command -v nvidia-smi >/dev/null; then
      timeout 20 nvidia-smi >>"$log" 2>&1
      timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
        --format=csv,noheader 2>&1 | sed 's/^/  /' | tee -a "$summary"
      timeout 20 nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && gpu_present=1
    else
      say "  nvidia-smi not found"
    fi
    say "--- tests"
    while read -r kind name timeout; do
      [ "$kind" = test ] || continue
      local bin="$bundle/bin/$name"
      resolve_libs "$bin"
      if [ -n "$unresolved" ]; then
        say "FAIL $name: unresolved libraries: $unresolved"
        n_fail=$((n_fail + 1))
        continue
      fi
      run_test "$name" "$timeout" "$bin"
    done <"$manifest"
    # Command-line tools on the GPU: the greedy golden prompt through --device cuda.
    while read -r kind name timeout; do
      [ "$kind" = cli ] || continue
      if ((gpu_present == 0)); then
        say "SKIP $name --device cuda (nvidia-smi lists no GPU)"
        continue
      fi
      resolve_libs "$bundle/bin/$name"
      if [ -n "$unresolved" ]; then
        say "FAIL $name: unresolved libraries: $unresolved"
        n_fail=$((n_fail + 1))
        continue
      fi
      run_test "$name --device cuda" "$timeout" "$bundle/bin/$name" --device cuda \
        --model "$bundle/models/stories260K.bin" --tokenizer "$bundle/models/tok512.bin" \
        --prompt "Once upon a time" --max-tokens 40 --temperature 0
      grep -E '^===== '"$name"' --device cuda' -A12 "$log" | grep -E 'device: |TTFT|^Once|^ ' |
        head -4 | sed 's/^/    /' | tee -a "$summary"
    done <"$manifest"

    say "--- benchmarks"
    while read -r kind name timeout; do
      [ "$kind" = bench ] || continue
      resolve_libs "$bundle/bin/$name"
      if [ -n "$unresolved" ]; then
        say "BENCH_FAIL $name: unresolved libraries: $unresolved"
        continue
      fi
      run_bench "$name" "$timeout" env LD_LIBRARY_PATH="$(lib_path_for)" "$bundle/bin/$name"
    done <"$manifest"
    if command -v python3 >/dev/null; then
      # PyTorch's own environment: none of the bundle's libraries.
      run_bench torch_decode_baseline 100 env PYTHONUNBUFFERED=1 \
        python3 "$bundle/bench/torch_decode_baseline.py"
    else
      say "BENCH_NOT_RUN torch_decode_baseline (no python3)"
    fi

    say "--- compute-sanitizer (memcheck) on the attention, KV and forward tests' small cases"
    sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer \
                   /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)"
    if [ -n "$sanitizer" ] && (( $(time_for 45) >= 30 )); then
      local sname
      local entry
      for entry in 'cuda_paged_attention_test:*Small*' 'cuda_kv_blocks_test:*Small*' \
                   'cuda_forward_test:*Mixed*:*Rejects*:*Pool*'; do
        sname="${entry%%:*}"
        [ -x "$bundle/bin/$sname" ] || continue
        run_sanitizer "$sname" "${entry#*:}"
      done
    else
      say "SKIP memcheck (compute-sanitizer ${sanitizer:-not found}; $(time_for 45)s left)"
    fi
  fi
  say "--- $( ((n_fail)) && echo "FAILED: $n_fail" || echo "all passed") in $(elapsed)s (summary $summary, log $log)"
  ((n_fail == 0))
}

# memcheck over the cases of a test binary that the gtest filter picks. Sanitizer errors fail;
# a sanitizer that cannot run on this machine, or runs out of time, is a SKIP.
run_sanitizer() {
  local name=$1 filter=$2 t out rc
  t="$(time_for 45)"
  if ((t < 15)); then
    say "SKIP memcheck:$name (time budget spent)"
    return
  fi
  out="$(mktemp)"
  LD_LIBRARY_PATH="$(lib_path_for)" timeout -k 5 "$t" "$sanitizer" --tool memcheck \
    --error-exitcode 99 "$bundle/bin/$name" --gtest_filter="$filter" >"$out" 2>&1
  rc=$?
  { echo "===== memcheck $name: rc $rc"; cat "$out"; } >>"$log"
  if ((rc == 0)); then
    say "PASS memcheck:$name"
  elif ((rc == 99)) || grep -q 'ERROR SUMMARY: [1-9]' "$out"; then
    say "FAIL memcheck:$name"
    grep -m10 -E 'Invalid|ERROR|out of bounds' "$out" | sed 's/^/    /' | tee -a "$summary"
    n_fail=$((n_fail + 1))
  elif ((rc == 124 || rc == 137)); then
    say "SKIP memcheck:$name (timed out after ${t}s)"
  elif ((rc == 77)); then
    say "SKIP memcheck:$name (no device)"
  else
    say "SKIP memcheck:$name (sanitizer could not run, rc $rc: $(tail -1 "$out"))"
  fi
  rm -f "$out"
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
esac
