"""What the deploy tests read: the Dockerfile as instructions and stages, .dockerignore as
patterns, the CMake targets that make executables, and the Kubernetes manifests rendered from a
kustomization the way `kubectl apply -k` would (for the subset of kustomize deploy/k8s uses: any
other field is an error here, never silently skipped). Nothing here runs docker or kubectl.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import re
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from pdserve_testlib import binary, build_dir, root_dir  # noqa: E402,F401


# ---- the Dockerfile -------------------------------------------------------------------------------

@dataclasses.dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    text: str     # the rest, continuation lines joined
    line: int     # where it starts (1-based)


@dataclasses.dataclass
class Stage:
    image: str    # FROM's image, global ARGs substituted
    name: str
    instructions: list


def dockerfile_instructions(path: pathlib.Path) -> list[Instruction]:
    """Instructions in order: comment lines dropped (also inside continuations, as docker does),
    lines ending in a backslash joined with the next."""
    out, pending, start = [], "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        if not pending and not line.strip():
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        pending += line
        keyword, _, rest = pending.strip().partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
        pending = ""
    assert not pending, f"{path}: the last instruction ends with a continuation"
    return out


def arg_defaults(instructions: list[Instruction]) -> dict:
    """{name: default} of the ARGs before the first FROM (quotes removed)."""
    defaults = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG" and "=" in ins.text:
            name, value = ins.text.split("=", 1)
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def substitute(text: str, values: dict) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
                  text)


def dockerfile_stages(path: pathlib.Path) -> list[Stage]:
    instructions = dockerfile_instructions(path)
    args = arg_defaults(instructions)
    stages = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = substitute(ins.text, args).split()
            assert len(words) == 3 and words[1].upper() == "AS", (
                f"{path}:{ins.line}: every stage is named (FROM IMAGE AS NAME): {ins.text}")
            stages.append(Stage(words[0], words[2], []))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


@dataclasses.dataclass
class Copy:
    sources: list
    destination: str
    from_stage: str | None
    line: int


def copies(stage: Stage) -> list[Copy]:
    out = []
    for ins in stage.instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = ins.text.split()
        options = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        from_stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
        out.append(Copy(paths[:-1], paths[-1], from_stage, ins.line))
    return out


def dockerignore_patterns(path: pathlib.Path) -> list[str]:
    return [l.strip() for l in path.read_text().splitlines()
            if l.strip() and not l.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether docker leaves `relative` (a path from the context root) out of the context: a
    pattern matches it or a folder above it (no `!` exceptions: .dockerignore uses none)."""
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    parts = pathlib.PurePosixPath(relative).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(_pattern_regex(p.strip("/")).match(prefix) for p in patterns for prefix in prefixes)


# ---- CMake ----------------------------------------------------------------------------------------

def cmake_executables() -> dict:
    """{build-relative path of the executable: its CMakeLists.txt} for every add_executable in
    the source tree: the build folder mirrors the source folder, and the file is the target's
    name unless its OUTPUT_NAME says otherwise."""
    out = {}
    root = root_dir()
    for cmakelists in root.rglob("CMakeLists.txt"):
        relative = cmakelists.parent.relative_to(root)
        if relative.parts and relative.parts[0].startswith("build"):
            continue
        text = cmakelists.read_text()
        renamed = dict(re.findall(
            r"set_target_properties\(\s*([\w.+-]+)\s+PROPERTIES\s+OUTPUT_NAME\s+([\w.+-]+)", text))
        for target in re.findall(r"add_executable\(\s*([\w.+-]+)", text):
            out[str(relative / renamed.get(target, target))] = cmakelists
    return out


# ---- kustomize ------------------------------------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "patches", "replicas"}


def load_documents(path: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def key(resource: dict) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def strategic_merge(base, patch):
    """Kubernetes' strategic merge patch as deploy/k8s uses it: maps merge key by key; lists of
    maps that all have a `name` (containers, env, volumes) merge item by item on it; any other
    value is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for k, v in patch.items():
            merged[k] = strategic_merge(base[k], v) if k in base else copy.deepcopy(v)
        return merged
    named = lambda items: all(isinstance(i, dict) and "name" in i for i in items)  # noqa: E731
    if isinstance(base, list) and isinstance(patch, list) and named(base) and named(patch):
        merged = [copy.deepcopy(i) for i in base]
        for item in patch:
            at = next((n for n, b in enumerate(merged) if b["name"] == item["name"]), None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = strategic_merge(merged[at], item)
        return merged
    return copy.deepcopy(patch)


def render_kustomization(directory: pathlib.Path) -> list[dict]:
    """The resources `kubectl apply -k directory` would create, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, (f"{directory}/kustomization.yaml uses {sorted(unknown)}, which this "
                         "renderer does not model: teach tests/deploy/deploy_lib.py")
    assert kustomization.get("kind") == "Kustomization", directory
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += render_kustomization(path) if path.is_dir() else load_documents(path)
    by_key = {}
    for r in resources:
        assert key(r) not in by_key, f"{directory}: {key(r)} is defined twice"
        by_key[key(r)] = r
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"{directory}: only patches by path are modelled: {entry}"
        for patch in load_documents(directory / entry["path"]):
            assert key(patch) in by_key, f"{directory}/{entry['path']}: patches no resource"
            index = resources.index(by_key[key(patch)])
            resources[index] = by_key[key(patch)] = strategic_merge(resources[index], patch)
    for entry in kustomization.get("replicas", []):
        target = by_key.get(("Deployment", entry["name"]))
        assert target is not None, f"{directory}: replicas names no Deployment: {entry}"
        target["spec"]["replicas"] = entry["count"]
    return resources
