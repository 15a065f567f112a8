// The cooperative-thread scheduler of host_emulation.h (tests only).

#include "kernels/cuda/host_emulation.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace pdserve::kernels::gpu::emu {

uint3 g_thread_idx{};
uint3 g_block_idx{};
dim3 g_block_dim{};
dim3 g_grid_dim{};

namespace {

constexpr size_t kStackBytes = 512 * 1024;

struct Barrier {
  int count = 0;
  int arrived = 0;
  uint64_t generation = 0;
};

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  uint3 idx{};
  int linear = 0;
  bool done = false;
};

struct BlockState {
  std::vector<std::unique_ptr<Fiber>> fibers;  // kept across blocks: stacks are reused
  int n_threads = 0;
  Fiber* current = nullptr;
  ucontext_t scheduler;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<uint32_t> shuffle_slots;  // [warp][32]
  std::vector<unsigned char> smem;
  const std::function<void()>* body = nullptr;
  uint64_t progress = 0;  // advances whenever a barrier opens or a thread finishes
};

BlockState& State() {
  static BlockState state;
  return state;
}

void Yield() {
  BlockState& s = State();
  swapcontext(&s.current->context, &s.scheduler);
}

void Wait(Barrier& b) {
  const uint64_t generation = b.generation;
  if (++b.arrived == b.count) {
    b.arrived = 0;
    ++b.generation;
    ++State().progress;
    return;
  }
  while (b.generation == generation) Yield();
}

void Trampoline() {
  BlockState& s = State();
  (*s.body)();
  s.current->done = true;
  ++s.progress;
  // Returning resumes uc_link, the scheduler.
}

void RunBlock(BlockState& s) {
  for (int i = 0; i < s.n_threads; ++i) {
    Fiber& f = *s.fibers[i];
    f.done = false;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &s.scheduler;
    makecontext(&f.context, Trampoline, 0);
  }
  int n_done = 0;
  while (n_done < s.n_threads) {
    const uint64_t before = s.progress;
    n_done = 0;
    for (int i = 0; i < s.n_threads; ++i) {
      Fiber& f = *s.fibers[i];
      if (f.done) {
        ++n_done;
        continue;
      }
      s.current = &f;
      g_thread_idx = f.idx;
      swapcontext(&s.scheduler, &f.context);
      if (f.done) ++n_done;
    }
    if (n_done < s.n_threads && s.progress == before) {
      std::fprintf(stderr,
                   "host emulation: deadlock in block (%u, %u, %u): %d of %d threads finished, "
                   "the others wait at a barrier that can no longer open\n",
                   g_block_idx.x, g_block_idx.y, g_block_idx.z, n_done, s.n_threads);
      std::abort();
    }
  }
}

}  // namespace

void SyncThreads() { Wait(State().block_barrier); }

uint32_t ShuffleBits(uint32_t bits, int lane_arg, bool xor_mode) {
  BlockState& s = State();
  const int linear = s.current->linear;
  const int warp = linear / 32;
  const int lane = linear % 32;
  uint32_t* slots = &s.shuffle_slots[static_cast<size_t>(warp) * 32];
  slots[lane] = bits;
  Wait(s.warp_barriers[warp]);
  const int src = xor_mode ? (lane ^ lane_arg) : lane_arg;
  const int warp_size = s.warp_barriers[warp].count;
  const uint32_t result = (src >= 0 && src < warp_size) ? slots[src] : bits;
  Wait(s.warp_barriers[warp]);
  return result;
}

unsigned char* DynamicSharedMemory() { return State().smem.data(); }

void RunGrid(dim3 grid, dim3 block, size_t smem_bytes, const std::function<void()>& body) {
  BlockState& s = State();
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (n <= 0 || n > 1024) {
    std::fprintf(stderr, "host emulation: bad block size %d\n", n);
    std::abort();
  }
  while (static_cast<int>(s.fibers.size()) < n) {
    auto f = std::make_unique<Fiber>();
    f->stack = std::make_unique<char[]>(kStackBytes);
    s.fibers.push_back(std::move(f));
  }
  s.n_threads = n;
  s.body = &body;
  s.block_barrier = Barrier{n, 0, 0};
  const int n_warps = (n + 31) / 32;
  s.warp_barriers.assign(n_warps, Barrier{});
  for (int w = 0; w < n_warps; ++w) s.warp_barriers[w].count = std::min(32, n - 32 * w);
  s.shuffle_slots.assign(static_cast<size_t>(n_warps) * 32, 0);
  for (int i = 0; i < n; ++i) {
    Fiber& f = *s.fibers[i];
    f.linear = i;
    f.idx = uint3{static_cast<unsigned>(i) % block.x,
                  static_cast<unsigned>(i) / block.x % block.y,
                  static_cast<unsigned>(i) / (block.x * block.y)};
  }
  g_block_dim = block;
  g_grid_dim = grid;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        g_block_idx = uint3{x, y, z};
        // Fresh, poisoned shared memory for every block: stale data from another block must
        // not make a kernel look right.
        s.smem.assign(smem_bytes, 0xA5);
        s.smem.shrink_to_fit();
        RunBlock(s);
      }
    }
  }
}

}  // namespace pdserve::kernels::gpu::emu
