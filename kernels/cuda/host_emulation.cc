// The cooperative-thread scheduler of host_emulation.h (tests only). Threads switch with a
// dozen instructions of x86-64 assembly rather than swapcontext, which makes two system calls
// (the signal mask) per switch and made the emulated tests ten times slower.

#include "kernels/cuda/host_emulation.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace pdserve::kernels::gpu::emu {

uint3 g_thread_idx{};
uint3 g_block_idx{};
dim3 g_block_dim{};
dim3 g_grid_dim{};

#if !defined(__x86_64__)
#error "the CUDA host emulation switches threads with x86-64 assembly"
#endif

// pdserve_emu_switch(save, load): saves the callee-saved registers on the current stack and the
// stack pointer in *save, then continues on the stack `load` (saved the same way).
extern "C" void pdserve_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .pushsection .text
  .globl pdserve_emu_switch
  .type pdserve_emu_switch, @function
pdserve_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pdserve_emu_switch, .-pdserve_emu_switch
  .popsection
)");

namespace {

constexpr size_t kStackBytes = 512 * 1024;

struct Barrier {
  int count = 0;
  int arrived = 0;
  uint64_t generation = 0;
};

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while switched out
  std::unique_ptr<char[]> stack;
  uint3 idx{};
  int linear = 0;
  bool done = false;
  const struct Barrier* waiting = nullptr;  // the barrier it waits at, if any
  uint64_t waiting_generation = 0;
};

struct BlockState {
  std::vector<std::unique_ptr<Fiber>> fibers;  // kept across blocks: stacks are reused
  int n_threads = 0;
  Fiber* current = nullptr;
  void* scheduler_sp = nullptr;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<uint32_t> shuffle_slots;  // [warp][32]
  std::vector<unsigned char> smem;
  const std::function<void()>* body = nullptr;
};

BlockState& State() {
  static BlockState state;
  return state;
}

void Yield() {
  BlockState& s = State();
  pdserve_emu_switch(&s.current->sp, s.scheduler_sp);
}

// The scheduler resumes a waiting thread only once its barrier has opened.
void Wait(Barrier& b) {
  if (++b.arrived == b.count) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  Fiber* me = State().current;
  me->waiting = &b;
  me->waiting_generation = b.generation;
  Yield();
  me->waiting = nullptr;
}

[[noreturn]] void FiberEntry() {
  BlockState& s = State();
  (*s.body)();
  s.current->done = true;
  pdserve_emu_switch(&s.current->sp, s.scheduler_sp);
  std::fprintf(stderr, "host emulation: a finished thread was resumed\n");
  std::abort();
}

// Lays out a fresh stack as pdserve_emu_switch leaves one: six saved registers (zero), then the
// return address FiberEntry, 16-byte aligned as after a call.
void* InitialStack(char* stack) {
  uintptr_t top = reinterpret_cast<uintptr_t>(stack + kStackBytes) & ~uintptr_t{15};
  void** slot = reinterpret_cast<void**>(top - 16);  // 16-byte aligned: FiberEntry's "return"
  slot[1] = nullptr;                                 // FiberEntry's own return address: none
  slot[0] = reinterpret_cast<void*>(&FiberEntry);
  for (int r = 1; r <= 6; ++r) slot[-r] = nullptr;   // rbp, rbx, r12..r15
  return slot - 6;
}

void RunBlock(BlockState& s) {
  for (int i = 0; i < s.n_threads; ++i) {
    Fiber& f = *s.fibers[i];
    f.done = false;
    f.waiting = nullptr;
    f.sp = InitialStack(f.stack.get());
  }
  int n_done = 0;
  while (n_done < s.n_threads) {
    bool ran = false;
    n_done = 0;
    for (int i = 0; i < s.n_threads; ++i) {
      Fiber& f = *s.fibers[i];
      if (f.done) {
        ++n_done;
        continue;
      }
      if (f.waiting != nullptr && f.waiting->generation == f.waiting_generation) continue;
      s.current = &f;
      g_thread_idx = f.idx;
      pdserve_emu_switch(&s.scheduler_sp, f.sp);
      ran = true;
      if (f.done) ++n_done;
    }
    if (n_done < s.n_threads && !ran) {
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

namespace {
thread_local CapturedWork* g_capture = nullptr;
}  // namespace

bool Capturing() { return g_capture != nullptr; }

void Record(std::function<void()> work) { g_capture->push_back(std::move(work)); }

bool BeginCapture(CapturedWork* into) {
  if (g_capture != nullptr) return false;
  g_capture = into;
  return true;
}

bool EndCapture() {
  if (g_capture == nullptr) return false;
  g_capture = nullptr;
  return true;
}

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
