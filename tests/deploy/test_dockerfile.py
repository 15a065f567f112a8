"""The Dockerfile, checked without building the image (no registry is reachable here): what it
copies exists, the binaries it installs are the CMake targets the build makes, the runtime stage
installs the packages that own every shared library those binaries load (ldd and dpkg on this
build, a Debian 12 machine like the image's), the build packages come from deploy/install-deps.sh,
and .dockerignore keeps what the build needs."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

import deploy_lib as lib

DOCKERFILE = lib.root_dir() / "Dockerfile"
SERVER_BINARIES = {"pdserve-router", "pdserve-prefill-worker", "pdserve-decode-worker",
                   "pdserve-client"}
BUILD_DIR_IN_IMAGE = "/src/build"


@pytest.fixture(scope="module")
def stages():
    stages = lib.dockerfile_stages(DOCKERFILE)
    assert [s.name for s in stages] == ["build", "runtime"], [s.name for s in stages]
    return {s.name: s for s in stages}


def runtime_packages() -> list[str]:
    value = lib.arg_defaults(lib.dockerfile_instructions(DOCKERFILE))["RUNTIME_PACKAGES"]
    return value.split()


def installed_binaries(stages) -> dict:
    """{binary name: its path in the build stage} of what the runtime stage copies from it."""
    out = {}
    for c in lib.copies(stages["runtime"]):
        if c.from_stage == "build":
            assert c.destination == "/usr/local/bin/", c
            for source in c.sources:
                out[pathlib.PurePosixPath(source).name] = source
    return out


def test_a_debian_12_build_stage_and_a_slim_debian_12_runtime(stages):
    assert stages["build"].image == "debian:bookworm"
    assert stages["runtime"].image == "debian:bookworm-slim"


def test_the_build_runs_deploy_build_sh_without_cuda_into_the_folder_the_runtime_copies_from(
        stages):
    runs = " ".join(i.text for i in stages["build"].instructions if i.keyword == "RUN")
    assert re.search(rf"PDSERVE_BUILD_DIR={BUILD_DIR_IN_IMAGE} deploy/build.sh\b[^;&]*"
                     r"-DPDSERVE_CUDA=OFF", runs), runs


def test_every_copied_source_is_in_the_build_context(stages):
    patterns = lib.dockerignore_patterns(lib.root_dir() / ".dockerignore")
    for stage in stages.values():
        for c in lib.copies(stage):
            if c.from_stage is not None:
                continue
            for source in c.sources:
                path = lib.root_dir() / source
                assert path.exists(), f"Dockerfile:{c.line}: COPY {source}: no such path"
                if source != ".":
                    assert not lib.dockerignored(source, patterns), (
                        f"Dockerfile:{c.line}: COPY {source}, which .dockerignore leaves out")


def test_the_runtime_installs_exactly_the_server_binaries_the_cmake_targets_make(stages):
    binaries = installed_binaries(stages)
    assert set(binaries) == SERVER_BINARIES, binaries
    executables = lib.cmake_executables()
    for name, source in binaries.items():
        assert source.startswith(BUILD_DIR_IN_IMAGE + "/"), source
        relative = source[len(BUILD_DIR_IN_IMAGE) + 1:]
        assert relative in executables, (
            f"the Dockerfile copies {source}, but no CMakeLists.txt makes {relative} "
            f"(add_executable targets: {sorted(executables)})")
        lib.binary(relative)  # and this build made it


def test_every_binary_the_runtime_stage_runs_is_one_it_installs(stages):
    binaries = set(installed_binaries(stages))
    named = set()
    for ins in stages["runtime"].instructions:
        if ins.keyword in ("RUN", "CMD", "ENTRYPOINT"):
            named |= set(re.findall(r"\bpdserve-[a-z-]+\b", ins.text))
    assert named, "the runtime stage runs no pdserve binary (the --help check, the CMD)"
    assert named <= binaries, named - binaries


def test_the_runtime_runs_as_an_unprivileged_user_without_build_packages(stages):
    users = [i.text for i in stages["runtime"].instructions if i.keyword == "USER"]
    assert users, "no USER: the binaries would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root"), users[-1]
    assert not [p for p in runtime_packages() if p.endswith("-dev")], runtime_packages()


def test_the_build_packages_are_the_list_in_install_deps_sh(stages):
    runs = " ".join(i.text for i in stages["build"].instructions if i.keyword == "RUN")
    extraction = re.search(r'eval "\$\((sed .*?deploy/install-deps\.sh)\)"', runs)
    assert extraction, "the build stage does not read deploy/install-deps.sh's package list"
    assert '"${debian_packages[@]}"' in runs
    # The same extraction, run here on the script as it is now.
    listed = subprocess.run(
        ["bash", "-c", f'eval "$({extraction.group(1)})"; echo "${{debian_packages[@]}}"'],
        cwd=lib.root_dir(), capture_output=True, text=True, check=True).stdout.split()
    for needed in ("cmake", "ninja-build", "g++", "libgrpc++-dev", "protobuf-compiler-grpc",
                   "libabsl-dev", "libxxhash-dev", "libutf8proc-dev"):
        assert needed in listed, (needed, listed)


def _owning_packages(libraries: set) -> dict:
    """{library path as ldd prints it: the Debian package that owns it}, from one dpkg -S (with
    merged /usr, dpkg knows some files under /lib and others under /usr/lib)."""
    def candidates(library: str) -> list:
        if library.startswith("/lib/"):
            return [library, "/usr" + library]
        if library.startswith("/usr/lib/"):
            return [library, library[len("/usr"):]]
        return [library]
    paths = sorted({c for library in libraries for c in candidates(library)})
    # Exit status 1 when some path is unknown, which is expected for one of each pair.
    out = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True).stdout
    owner = {}
    for line in out.splitlines():
        package, _, path = line.partition(": ")
        owner[path.strip()] = package.split(":")[0]
    found = {}
    for library in libraries:
        packages = [owner[c] for c in candidates(library) if c in owner]
        assert packages, f"no Debian package owns {library}: the image cannot install it"
        found[library] = packages[0]
    return found


def cuda_toolkit_root() -> pathlib.Path | None:
    """The CUDA toolkit the test's build links, resolved; None for a CPU-only build."""
    cache = (lib.build_dir() / "CMakeCache.txt").read_text()
    if "PDSERVE_CUDA:BOOL=ON" not in cache:
        return None
    nvcc = re.search(r"^CMAKE_CUDA_COMPILER:\w+=(.+)$", cache, re.M)
    return pathlib.Path(nvcc.group(1)).resolve().parent.parent if nvcc else None


@pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("ldd") is None,
                    reason="needs dpkg and ldd (a Debian machine, as the image is)")
def test_the_runtime_packages_own_every_library_the_binaries_load(stages):
    # The image builds with -DPDSERVE_CUDA=OFF; the build this test reads may be a CUDA build
    # (CI's is), whose binaries also load the CUDA toolkit's libraries (cuBLAS): those are not
    # the image's.
    cuda_root = cuda_toolkit_root()
    loaded_by = {}
    for name, source in installed_binaries(stages).items():
        path = lib.binary(source[len(BUILD_DIR_IN_IMAGE) + 1:])
        ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
        assert "not found" not in ldd, ldd
        for library in re.findall(r"=> (/\S+)", ldd):
            if cuda_root is not None and pathlib.Path(library).resolve().is_relative_to(cuda_root):
                continue
            loaded_by.setdefault(library, set()).add(name)
    base = {"libc6", "libgcc-s1"}  # in every Debian image
    missing = {}
    for library, package in _owning_packages(set(loaded_by)).items():
        if package not in base and package not in runtime_packages():
            missing.setdefault(package, set()).update(loaded_by[library])
    assert not missing, f"add to the Dockerfile's RUNTIME_PACKAGES: {missing}"
    status = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n",
                             *runtime_packages()], capture_output=True, text=True).stdout
    installed = {l.split()[0] for l in status.splitlines() if l.endswith("install ok installed")}
    # Real names: this machine, a Debian 12 build machine, has each of them installed.
    assert set(runtime_packages()) <= installed, set(runtime_packages()) - installed


def test_dockerignore_keeps_what_the_build_needs_and_drops_builds_models_and_git():
    patterns = lib.dockerignore_patterns(lib.root_dir() / ".dockerignore")
    for kept in ("CMakeLists.txt", "cmake/PdserveTesting.cmake", "proto/worker.proto",
                 "deploy/build.sh", "deploy/install-deps.sh", "deploy/lib/usage.sh",
                 "router/router_main.cc", "tests/CMakeLists.txt", "bench/CMakeLists.txt"):
        assert (lib.root_dir() / kept).exists(), kept
        assert not lib.dockerignored(kept, patterns), f".dockerignore leaves out {kept}"
    for dropped in (".git/HEAD", "build/CMakeCache.txt", "build-k8s/build.ninja",
                    "models/SmolLM2-135M-Instruct.Q4_1.gguf", "tests/deploy/__pycache__/x.pyc"):
        assert lib.dockerignored(dropped, patterns), f".dockerignore keeps {dropped}"
    # Every folder CMake adds must be in the context.
    top = re.findall(r"add_subdirectory\((\w+)\)", (lib.root_dir() / "CMakeLists.txt").read_text())
    for folder in top:
        assert not lib.dockerignored(f"{folder}/CMakeLists.txt", patterns), folder
