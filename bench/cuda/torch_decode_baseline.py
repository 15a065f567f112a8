"""PyTorch baseline for bench/cuda/decode_step_bench.cc: the same decoder step at SmolLM2-135M's
shapes (30 layers, dim 576, 9 heads, 3 kv heads, head_dim 64, hidden 1536, vocab 49152, tied
embedding), random bf16 weights, f32 residual stream, bf16 KV cache, on the same GPU.

PyTorch has no paged KV: the cache is a dense (batch, kv_heads, max_ctx, head_dim) tensor per
layer, the new K/V are written at position ctx and F.scaled_dot_product_attention (GQA) reads
positions [0, ctx]. Timed eagerly and as a CUDA graph (torch.cuda.CUDAGraph).

Run by deploy/gpu-check.sh --run (PyTorch is on the GPU machine, not on the build machine).
Prints "RESULT decode_step torch ..." lines. Exit status: 0 when every configuration ran, 1 when
one failed, 77 (skipped) without PyTorch or without a CUDA device, 2 for bad usage.
"""

import argparse
import math
import sys
import time

LAYERS, DIM, HEADS, KV_HEADS, HEAD_DIM, HIDDEN, VOCAB = 30, 576, 9, 3, 64, 1536, 49152
EPS, ROPE_BASE = 1e-5, 100000.0  # SmolLM2's, as bench/cuda/smollm2_shape.h


def build_model(torch, device):
    g = torch.Generator(device=device)
    g.manual_seed(1)

    def uniform(shape, a):
        return ((torch.rand(shape, generator=g, device=device) * 2 - 1) * a).to(torch.bfloat16)

    s_dim, s_hidden = 1 / math.sqrt(DIM), 1 / math.sqrt(HIDDEN)
    qkv = (HEADS + 2 * KV_HEADS) * HEAD_DIM
    model = {
        "embedding": uniform((VOCAB, DIM), 1.0),
        "final_norm": torch.ones(DIM, device=device),
        "layers": [],
    }
    for _ in range(LAYERS):
        model["layers"].append({
            "attn_norm": torch.ones(DIM, device=device),
            "wqkv": uniform((qkv, DIM), s_dim),
            "wo": uniform((DIM, DIM), s_dim),
            "ffn_norm": torch.ones(DIM, device=device),
            "wgu": uniform((2 * HIDDEN, DIM), s_dim),
            "wdown": uniform((DIM, HIDDEN), s_hidden),
        })
    return model


def rms_norm(torch, x, w):
    # x: (n, dim) f32 -> bf16
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w).to(torch.bfloat16)


def rope_interleaved(torch, x, cos, sin):
    # x: (n, heads, head_dim) bf16; pairs (2i, 2i+1) rotated; cos/sin: (n, 1, head_dim / 2) f32
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).to(torch.bfloat16)


def make_step(torch, F, model, batch, ctx, device):
    max_ctx = ctx + 1
    k_cache = [torch.full((batch, KV_HEADS, max_ctx, HEAD_DIM), 0.01, dtype=torch.bfloat16,
                          device=device) for _ in range(LAYERS)]
    v_cache = [torch.full_like(k_cache[0], 0.01) for _ in range(LAYERS)]
    tokens = (torch.arange(batch, device=device) * 7919 + 13) % VOCAB
    inv_freq = ROPE_BASE ** (-torch.arange(0, HEAD_DIM, 2, device=device, dtype=torch.float64)
                             / HEAD_DIM)
    angle = (ctx * inv_freq).float()
    cos = angle.cos().view(1, 1, -1).expand(batch, 1, -1).contiguous()
    sin = angle.sin().view(1, 1, -1).expand(batch, 1, -1).contiguous()
    scale = 1 / math.sqrt(HEAD_DIM)
    try:
        F.scaled_dot_product_attention(
            torch.zeros(1, HEADS, 1, HEAD_DIM, device=device, dtype=torch.bfloat16),
            torch.zeros(1, KV_HEADS, 2, HEAD_DIM, device=device, dtype=torch.bfloat16),
            torch.zeros(1, KV_HEADS, 2, HEAD_DIM, device=device, dtype=torch.bfloat16),
            enable_gqa=True)
        gqa = True
    except TypeError:
        gqa = False
    out = {}

    def step():
        x = model["embedding"][tokens].float()  # (batch, dim)
        for l, y in enumerate(model["layers"]):
            h = rms_norm(torch, x, y["attn_norm"])
            qkv = h @ y["wqkv"].t()  # (batch, 960)
            q = qkv[:, :HEADS * HEAD_DIM].view(batch, HEADS, HEAD_DIM)
            k = qkv[:, HEADS * HEAD_DIM:(HEADS + KV_HEADS) * HEAD_DIM].view(batch, KV_HEADS, HEAD_DIM)
            v = qkv[:, (HEADS + KV_HEADS) * HEAD_DIM:].view(batch, KV_HEADS, HEAD_DIM)
            q = rope_interleaved(torch, q, cos, sin)
            k = rope_interleaved(torch, k, cos, sin)
            k_cache[l][:, :, ctx] = k
            v_cache[l][:, :, ctx] = v
            kc, vc = k_cache[l], v_cache[l]
            if not gqa:
                kc = kc.repeat_interleave(HEADS // KV_HEADS, dim=1)
                vc = vc.repeat_interleave(HEADS // KV_HEADS, dim=1)
            if gqa:
                a = F.scaled_dot_product_attention(q.unsqueeze(2), kc, vc, scale=scale, enable_gqa=True)
            else:
                a = F.scaled_dot_product_attention(q.unsqueeze(2), kc, vc, scale=scale)
            a = a.reshape(batch, DIM)
            x = x + (a @ y["wo"].t()).float()
            h = rms_norm(torch, x, y["ffn_norm"])
            gu = h @ y["wgu"].t()
            act = F.silu(gu[:, :HIDDEN]) * gu[:, HIDDEN:]
            x = x + (act @ y["wdown"].t()).float()
        h = rms_norm(torch, x, model["final_norm"])
        out["logits"] = (h @ model["embedding"].t()).float()
        return out["logits"]

    return step, gqa


def time_ms(torch, fn, iters):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / iters


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="1x512,32x512,32x4096",
                        help="comma-separated BATCHxCTX")
    args = parser.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"SKIPPED: PyTorch is not installed here ({e})")
        return 77
    if not torch.cuda.is_available():
        print("SKIPPED: torch.cuda.is_available() is False")
        return 77
    device = torch.device("cuda")
    print(f"INFO torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    model = build_model(torch, device)
    failures = 0
    for config in args.configs.split(","):
        batch, ctx = (int(v) for v in config.split("x"))
        try:
            with torch.inference_mode():
                step, gqa = make_step(torch, F, model, batch, ctx, device)
                for _ in range(3):
                    step()
                eager_ms = time_ms(torch, step, 10)
                graph_ms = -1.0
                try:
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(2):
                            step()
                    torch.cuda.current_stream().wait_stream(s)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        step()
                    graph.replay()
                    graph_ms = time_ms(torch, graph.replay, 30)
                except Exception as e:  # a graph failure still leaves the eager number
                    print(f"INFO torch CUDA graph failed for {config}: {e}")
                logits = step()
                if not torch.isfinite(logits).all():
                    print(f"FAILED non-finite logits for {config}")
                    failures += 1
            best = graph_ms if graph_ms > 0 else eager_ms
            print(f"RESULT decode_step torch batch={batch} ctx={ctx} ms_per_step={best:.3f} "
                  f"tok_per_s={batch * 1e3 / best:.0f} "
                  f"({'cuda graph' if graph_ms > 0 else 'eager'}; eager {eager_ms:.3f} ms/step; "
                  f"sdpa gqa={'native' if gqa else 'repeat_interleave'})", flush=True)
            del step
            torch.cuda.empty_cache()
        except Exception as e:
            print(f"FAILED torch baseline {config}: {type(e).__name__}: {e}", flush=True)
            failures += 1
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
