#include "common/kv_transfer/shm/shared_memory_region.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace pdserve::kv_transfer {
namespace {

constexpr size_t kMaxNameChars = 255;  // NAME_MAX for the file under /dev/shm
constexpr int kCreateAttempts = 4;     // name collisions need 64 equal random bits
constexpr char kNamePrefix[] = "pdserve-kv-";

absl::Status ErrnoError(int error_number, const std::string& name, absl::string_view what) {
  return absl::ErrnoToStatus(error_number,
                             absl::StrCat("shared-memory object '", name, "': ", what));
}

absl::Status CheckName(const std::string& name) {
  if (name.size() < 2 || name.size() > kMaxNameChars + 1 || name[0] != '/' ||
      name.find('/', 1) != std::string::npos || name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared-memory object name '", name, "' is malformed: it must be '/' then 1 to ",
        kMaxNameChars, " characters without '/'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RandomName() {
  uint64_t random = 0;
  size_t got = 0;
  while (got < sizeof(random)) {
    const ssize_t n = getrandom(reinterpret_cast<char*>(&random) + got, sizeof(random) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "shared-memory name: getrandom");
    }
    got += static_cast<size_t>(n);
  }
  return absl::StrFormat("/%s%d-%016x", kNamePrefix, static_cast<int>(getpid()), random);
}

// Maps all of fd read-write; closes fd whatever happens. `extra_flags`: MAP_POPULATE fills the
// page tables at once, so that a writer does not take a page fault per 4 KiB it writes.
absl::StatusOr<uint8_t*> MapAndClose(int fd, size_t bytes, const std::string& name,
                                     int extra_flags) {
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | extra_flags, fd, 0);
  const int mmap_errno = errno;
  close(fd);
  if (data == MAP_FAILED) {
    return ErrnoError(mmap_errno, name, absl::StrCat("mmap of ", bytes, " bytes"));
  }
  return static_cast<uint8_t*>(data);
}

}  // namespace

absl::StatusOr<SharedMemoryRegion> SharedMemoryRegion::Create(size_t bytes) {
  if (bytes == 0 || bytes > static_cast<size_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared-memory region: ", bytes, " bytes requested, must be in [1, ",
        std::numeric_limits<off_t>::max(), "]"));
  }
  std::string name;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    absl::StatusOr<std::string> random_name = RandomName();
    if (!random_name.ok()) return random_name.status();
    name = *std::move(random_name);
    fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 && (errno != EEXIST || attempt + 1 == kCreateAttempts)) {
      return ErrnoError(errno, name, "shm_open (create)");
    }
  }
  // The owner's mark, held until this process ends however it ends (RemoveOrphanedRegions).
  // A lock taken on a fresh tmpfs file cannot fail for want of resources worth reporting.
  (void)flock(fd, LOCK_SH);
  // From here every error path unlinks: the name exists only while this function may fail or
  // the returned object lives.
  absl::Status status;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    status = ErrnoError(errno, name, absl::StrCat("ftruncate to ", bytes, " bytes"));
  } else if (const int err = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); err != 0) {
    // Reserving now turns a full /dev/shm into this error instead of a SIGBUS mid-transfer.
    status = ErrnoError(err, name, absl::StrCat("reserving ", bytes, " bytes in /dev/shm"));
  }
  if (!status.ok()) {
    close(fd);
    shm_unlink(name.c_str());
    return status;
  }
  // The lock lives with a descriptor of its own, kept open as long as the region.
  const int owner_fd = dup(fd);
  // The creator's pages are touched as its pool is used: no need to fault them all in now.
  absl::StatusOr<uint8_t*> data = MapAndClose(fd, bytes, name, 0);
  if (!data.ok() || owner_fd < 0) {
    if (owner_fd >= 0) close(owner_fd);
    shm_unlink(name.c_str());
    return data.ok() ? ErrnoError(errno, name, "dup") : data.status();
  }
  // A new object reads as zeros (ftruncate and fallocate give zero-filled pages).
  SharedMemoryRegion region(std::move(name), *data, bytes, /*owns_name=*/true);
  region.owner_fd_ = owner_fd;
  return region;
}

absl::StatusOr<SharedMemoryRegion> SharedMemoryRegion::Open(const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return ErrnoError(errno, name, "shm_open (read-write)");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(err, name, "fstat");
  }
  if (st.st_size <= 0) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("shared-memory object '", name, "' holds no bytes"));
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  // An opener writes into the region (the shm transport's sender): its page tables are filled
  // once here rather than by a fault per page during transfers.
  absl::StatusOr<uint8_t*> data = MapAndClose(fd, bytes, name, MAP_POPULATE);
  if (!data.ok()) return data.status();
  return SharedMemoryRegion(name, *data, bytes, /*owns_name=*/false);
}

SharedMemoryRegion::SharedMemoryRegion(SharedMemoryRegion&& other) noexcept
    : name_(std::move(other.name_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owns_name_(std::exchange(other.owns_name_, false)),
      owner_fd_(std::exchange(other.owner_fd_, -1)) {
  other.name_.clear();
}

SharedMemoryRegion& SharedMemoryRegion::operator=(SharedMemoryRegion&& other) noexcept {
  if (this != &other) {
    Release();
    name_ = std::move(other.name_);
    other.name_.clear();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owns_name_ = std::exchange(other.owns_name_, false);
    owner_fd_ = std::exchange(other.owner_fd_, -1);
  }
  return *this;
}

SharedMemoryRegion::~SharedMemoryRegion() { Release(); }

void SharedMemoryRegion::Release() {
  if (data_ != nullptr) munmap(data_, size_);
  if (owns_name_) shm_unlink(name_.c_str());
  if (owner_fd_ >= 0) close(owner_fd_);
  owner_fd_ = -1;
  name_.clear();
  data_ = nullptr;
  size_ = 0;
  owns_name_ = false;
}

std::vector<std::string> RemoveOrphanedRegions() {
  std::vector<std::string> removed;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return removed;
  while (const dirent* entry = readdir(dir)) {
    if (!absl::StartsWith(entry->d_name, kNamePrefix)) continue;
    const std::string name = absl::StrCat("/", entry->d_name);
    const int fd = shm_open(name.c_str(), O_RDWR, 0);
    if (fd < 0) continue;
    struct stat st;
    // An empty object is skipped: its creator may not have taken its lock yet (it locks before
    // it sizes the object), and it holds no memory.
    const bool sized = fstat(fd, &st) == 0 && st.st_size > 0;
    if (sized && flock(fd, LOCK_EX | LOCK_NB) == 0 && shm_unlink(name.c_str()) == 0) {
      removed.push_back(name);
    }
    close(fd);
  }
  closedir(dir);
  return removed;
}

absl::StatusOr<std::string> HostBootId() {
  constexpr char kPath[] = "/proc/sys/kernel/random/boot_id";
  std::ifstream in(kPath);
  if (!in) return absl::NotFoundError(absl::StrCat("host boot id: cannot read ", kPath));
  std::stringstream contents;
  contents << in.rdbuf();
  std::string id(absl::StripAsciiWhitespace(contents.str()));
  if (id.empty()) return absl::DataLossError(absl::StrCat("host boot id: ", kPath, " is empty"));
  return id;
}

}  // namespace pdserve::kv_transfer
