#include "common/kv_transfer/shm/shared_memory_region.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pdserve::kv_transfer {
namespace {

using ::testing::MatchesRegex;

// /dev/shm entries whose names this process's Create() would give.
std::vector<std::string> OurShmEntries() {
  const std::string prefix = absl::StrCat("pdserve-kv-", getpid(), "-");
  std::vector<std::string> names;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return names;
  while (const dirent* entry = readdir(dir)) {
    if (absl::StartsWith(entry->d_name, prefix)) names.push_back(entry->d_name);
  }
  closedir(dir);
  return names;
}

bool ShmExists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm" + name).c_str(), &st) == 0;
}

// Byte i of block `block`: differs between blocks and along a block, never all zero.
uint8_t Pattern(size_t block, size_t i) {
  return static_cast<uint8_t>((block * 131 + i * 7 + (i >> 8) + 1) & 0xff);
}

TEST(SharedMemoryRegionTest, CreateGivesAZeroedPrivateObjectNamedForThisProcess) {
  absl::StatusOr<SharedMemoryRegion> region = SharedMemoryRegion::Create(10000);
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_THAT(region->name(),
              MatchesRegex(absl::StrCat("/pdserve-kv-", getpid(), "-[0-9a-f]{16}")));
  EXPECT_EQ(region->size(), 10000u);
  EXPECT_TRUE(region->owns_name());
  ASSERT_NE(region->data(), nullptr);
  EXPECT_TRUE(std::all_of(region->data(), region->data() + region->size(),
                          [](uint8_t b) { return b == 0; }));
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm" + region->name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 10000);
}

TEST(SharedMemoryRegionTest, TwoCreatesGetDifferentNames) {
  absl::StatusOr<SharedMemoryRegion> a = SharedMemoryRegion::Create(4096);
  absl::StatusOr<SharedMemoryRegion> b = SharedMemoryRegion::Create(4096);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->name(), b->name());
  EXPECT_NE(a->data(), b->data());
}

TEST(SharedMemoryRegionTest, OwnerDestructionUnlinksAndOpenerDestructionDoesNot) {
  std::string name;
  {
    absl::StatusOr<SharedMemoryRegion> owner = SharedMemoryRegion::Create(4096);
    ASSERT_TRUE(owner.ok()) << owner.status();
    name = owner->name();
    {
      absl::StatusOr<SharedMemoryRegion> opened = SharedMemoryRegion::Open(name);
      ASSERT_TRUE(opened.ok()) << opened.status();
      EXPECT_FALSE(opened->owns_name());
    }
    EXPECT_TRUE(ShmExists(name));
  }
  EXPECT_FALSE(ShmExists(name));
  EXPECT_EQ(SharedMemoryRegion::Open(name).status().code(), absl::StatusCode::kNotFound);
}

TEST(SharedMemoryRegionTest, OpenInTheSameProcessSeesTheSameBytes) {
  absl::StatusOr<SharedMemoryRegion> owner = SharedMemoryRegion::Create(3 * 4096 + 5);
  ASSERT_TRUE(owner.ok()) << owner.status();
  absl::StatusOr<SharedMemoryRegion> opened = SharedMemoryRegion::Open(owner->name());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->name(), owner->name());
  EXPECT_EQ(opened->size(), owner->size());
  EXPECT_NE(opened->data(), owner->data());  // a second mapping, not the same pointer
  for (size_t i = 0; i < owner->size(); ++i) owner->data()[i] = Pattern(0, i);
  EXPECT_TRUE(std::equal(owner->data(), owner->data() + owner->size(), opened->data()));
  opened->data()[owner->size() - 1] = 0;
  EXPECT_EQ(owner->data()[owner->size() - 1], 0);
}

// The transport's path: another process maps the region by name and writes blocks in place.
TEST(SharedMemoryRegionTest, ChildProcessWritesShuffledBlocksByNameAndParentSeesThem) {
  constexpr size_t kBlockBytes = 4096 + 48;  // not page-aligned, as KV blocks need not be
  constexpr size_t kBlocks = 24;
  absl::StatusOr<SharedMemoryRegion> region = SharedMemoryRegion::Create(kBlocks * kBlockBytes);
  ASSERT_TRUE(region.ok()) << region.status();
  // Half of blocks [1, kBlocks) in shuffled order; the other half stays untouched. Block 0 is
  // written by the parent for the child to check: bytes flow both ways.
  std::vector<size_t> blocks(kBlocks - 1);
  std::iota(blocks.begin(), blocks.end(), 1);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(7));
  blocks.resize(kBlocks / 2);
  for (size_t i = 0; i < kBlockBytes; ++i) region->data()[i] = Pattern(1000, i);

  const std::string name = region->name();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only the mapping opened by name is used; _exit skips the inherited owner's destructor.
    absl::StatusOr<SharedMemoryRegion> opened = SharedMemoryRegion::Open(name);
    if (!opened.ok()) _exit(2);
    if (opened->size() != kBlocks * kBlockBytes) _exit(3);
    for (size_t i = 0; i < kBlockBytes; ++i) {
      if (opened->data()[i] != Pattern(1000, i)) _exit(4);
    }
    for (size_t block : blocks) {
      for (size_t i = 0; i < kBlockBytes; ++i) {
        opened->data()[block * kBlockBytes + i] = Pattern(block, i);
      }
    }
    _exit(0);
  }
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status)) << "child status " << wait_status;
  ASSERT_EQ(WEXITSTATUS(wait_status), 0) << "2: Open failed, 3: wrong size, 4: header differs";

  for (size_t block = 1; block < kBlocks; ++block) {
    const bool written = std::find(blocks.begin(), blocks.end(), block) != blocks.end();
    const uint8_t* bytes = region->data() + block * kBlockBytes;
    size_t mismatches = 0;
    for (size_t i = 0; i < kBlockBytes; ++i) {
      mismatches += bytes[i] != (written ? Pattern(block, i) : 0);
    }
    EXPECT_EQ(mismatches, 0u) << "block " << block << (written ? " (written)" : " (untouched)");
  }
}

TEST(SharedMemoryRegionTest, OrphansOfDeadCreatorsAreRemovedAndLiveRegionsKept) {
  absl::StatusOr<SharedMemoryRegion> live = SharedMemoryRegion::Create(4096);
  ASSERT_TRUE(live.ok()) << live.status();
  // A child creates a region and dies without its destructor, as under SIGKILL.
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<SharedMemoryRegion> orphan = SharedMemoryRegion::Create(8192);
    if (!orphan.ok()) _exit(2);
    const std::string& name = orphan->name();
    if (write(pipe_fds[1], name.data(), name.size()) != static_cast<ssize_t>(name.size())) {
      _exit(3);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  char buffer[300] = {};
  const ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer) - 1);
  close(pipe_fds[0]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << wait_status;
  ASSERT_GT(n, 0);
  const std::string orphan_name(buffer, static_cast<size_t>(n));
  ASSERT_TRUE(ShmExists(orphan_name)) << orphan_name;

  const std::vector<std::string> removed = RemoveOrphanedRegions();
  EXPECT_THAT(removed, ::testing::Contains(orphan_name));
  EXPECT_THAT(removed, ::testing::Not(::testing::Contains(live->name())));
  EXPECT_FALSE(ShmExists(orphan_name));
  EXPECT_TRUE(ShmExists(live->name()));
  // A moved region keeps its owner's mark.
  SharedMemoryRegion moved = *std::move(live);
  EXPECT_THAT(RemoveOrphanedRegions(), ::testing::Not(::testing::Contains(moved.name())));
  EXPECT_TRUE(ShmExists(moved.name()));
}

TEST(SharedMemoryRegionTest, OpenOfAMissingObjectIsNotFoundNamingIt) {
  const std::string name = absl::StrCat("/pdserve-kv-", getpid(), "-0000000000000000");
  absl::StatusOr<SharedMemoryRegion> opened = SharedMemoryRegion::Open(name);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kNotFound) << opened.status();
  EXPECT_THAT(opened.status().message(), ::testing::HasSubstr(name));
}

TEST(SharedMemoryRegionTest, OpenOfAMalformedNameIsInvalidArgument) {
  for (const std::string& name : {std::string(), std::string("/"), std::string("pdserve-kv"),
                                  std::string("/a/b"), "/" + std::string(256, 'x'),
                                  std::string("/a\0b", 4)}) {
    absl::StatusOr<SharedMemoryRegion> opened = SharedMemoryRegion::Open(name);
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument)
        << "'" << name << "': " << opened.status();
  }
}

TEST(SharedMemoryRegionTest, OpenWithoutReadWriteAccessIsPermissionDenied) {
  // An object nobody but root may open (mode 0), made without the class.
  const std::string name = absl::StrCat("/pdserve-kv-", getpid(), "-test-mode-0");
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0);
  ASSERT_GE(fd, 0) << "shm_open " << name;
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  close(fd);
  // Root ignores file modes, so the open runs as "nobody" in a child; otherwise here.
  int code = -1;
  if (geteuid() != 0) {
    code = static_cast<int>(SharedMemoryRegion::Open(name).status().code());
  } else {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (setgid(65534) != 0 || setuid(65534) != 0) _exit(100);
      _exit(static_cast<int>(SharedMemoryRegion::Open(name).status().code()));
    }
    int wait_status = 0;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    ASSERT_TRUE(WIFEXITED(wait_status));
    code = WEXITSTATUS(wait_status);
  }
  shm_unlink(name.c_str());
  if (code == 100) GTEST_SKIP() << "cannot drop root privileges here to test file modes";
  EXPECT_EQ(code, static_cast<int>(absl::StatusCode::kPermissionDenied));
}

TEST(SharedMemoryRegionTest, ZeroBytesIsInvalidArgumentAndLeavesNothing) {
  EXPECT_EQ(SharedMemoryRegion::Create(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(OurShmEntries(), ::testing::IsEmpty());
}

TEST(SharedMemoryRegionTest, CreateThatFailsAfterNamingLeavesNothingInDevShm) {
  // 4 EiB: shm_open and ftruncate succeed, reserving the memory cannot.
  constexpr size_t kHuge = size_t{1} << 62;
  struct statvfs fs;
  ASSERT_EQ(statvfs("/dev/shm", &fs), 0);
  if (fs.f_blocks == 0) GTEST_SKIP() << "/dev/shm has no size limit: 4 EiB would be attempted";
  ASSERT_THAT(OurShmEntries(), ::testing::IsEmpty());
  absl::StatusOr<SharedMemoryRegion> region = SharedMemoryRegion::Create(kHuge);
  EXPECT_FALSE(region.ok());
  EXPECT_EQ(region.status().code(), absl::StatusCode::kResourceExhausted) << region.status();
  EXPECT_THAT(region.status().message(), ::testing::HasSubstr("/pdserve-kv-"));
  EXPECT_THAT(OurShmEntries(), ::testing::IsEmpty());
}

TEST(SharedMemoryRegionTest, MovingTransfersTheMappingAndTheName) {
  absl::StatusOr<SharedMemoryRegion> created = SharedMemoryRegion::Create(4096);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string name = created->name();
  uint8_t* const data = created->data();
  data[17] = 42;

  SharedMemoryRegion moved(*std::move(created));
  EXPECT_EQ(moved.name(), name);
  EXPECT_EQ(moved.data(), data);
  EXPECT_TRUE(moved.owns_name());
  EXPECT_TRUE(created->name().empty());
  EXPECT_EQ(created->data(), nullptr);
  EXPECT_EQ(created->size(), 0u);
  EXPECT_FALSE(created->owns_name());
  created = absl::InternalError("destroy the moved-from region");
  EXPECT_TRUE(ShmExists(name));
  EXPECT_EQ(moved.data()[17], 42);

  // Assigning over a region releases it: its name goes.
  absl::StatusOr<SharedMemoryRegion> other = SharedMemoryRegion::Create(4096);
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string other_name = other->name();
  *other = std::move(moved);
  EXPECT_FALSE(ShmExists(other_name));
  EXPECT_EQ(other->name(), name);
  EXPECT_TRUE(ShmExists(name));
  other = absl::InternalError("destroy it");
  EXPECT_FALSE(ShmExists(name));
}

TEST(HostBootIdTest, IsAStableUuid) {
  absl::StatusOr<std::string> id = HostBootId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->size(), 36u);
  EXPECT_THAT(*id, MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"));
  absl::StatusOr<std::string> again = HostBootId();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *id);
}

}  // namespace
}  // namespace pdserve::kv_transfer
