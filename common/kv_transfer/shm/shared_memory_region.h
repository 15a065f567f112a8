#pragma once
// A POSIX shared-memory object mapped read-write: the memory under the decode worker's KV pool
// that a prefill worker on the same host maps and writes block bytes into directly (the "shm"
// KV transport).
//
// Ownership: the process that Create()s a region owns its name and unlinks it when the object
// is destroyed; Open() maps an existing object and never unlinks it. Unlinking removes only the
// name: every mapping made before stays valid until it is unmapped, and the memory is freed
// with the last one. A creator killed without running its destructor (SIGKILL, abort) leaves
// the object in /dev/shm; its name carries the creator's pid so that it can be found, and
// RemoveOrphanedRegions removes it (the creator holds a shared flock on the object for its
// whole life, which the kernel drops when the process ends, however it ends).
//
// Thread-safety: name(), data() and size() never change after construction and may be called
// from any thread. The bytes get no synchronisation from this class, within a process or
// across processes: a writer must tell readers that bytes are complete by some other means
// (a message sent after the writes, which orders them), and two writers of one byte are the
// callers' to order.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <vector>

#include "absl/status/statusor.h"

namespace pdserve::kv_transfer {

class SharedMemoryRegion {
 public:
  // A new object of `bytes` bytes, all zero, named "/pdserve-kv-<pid>-<16 random hex digits>"
  // (unguessable: another process learns it only when told), created exclusively with mode
  // 0600 and mapped read-write. Its memory is reserved up front, so a full /dev/shm is an error
  // here (ResourceExhausted naming the size), never a SIGBUS on a later write. bytes == 0 or
  // past the largest file size is InvalidArgument. On any error nothing is left in /dev/shm.
  static absl::StatusOr<SharedMemoryRegion> Create(size_t bytes);

  // Maps the existing object `name` (as name() returns it: "/" then up to 255 characters
  // without "/") read-write, its size taken from the object. Errors name the object:
  // InvalidArgument for a malformed name, NotFound when no such object exists,
  // PermissionDenied when this process may not open it read-write, FailedPrecondition when it
  // holds no bytes.
  static absl::StatusOr<SharedMemoryRegion> Open(const std::string& name);

  SharedMemoryRegion(SharedMemoryRegion&& other) noexcept;
  SharedMemoryRegion& operator=(SharedMemoryRegion&& other) noexcept;
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;
  // Unmaps; the creator also unlinks the name. A moved-from object does neither.
  ~SharedMemoryRegion();

  // The object's name, "/pdserve-kv-..." (empty once moved from).
  const std::string& name() const { return name_; }
  // Byte 0 of this process's mapping, valid while this object lives (null once moved from).
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // True for the object that Create() returned (it unlinks the name when destroyed).
  bool owns_name() const { return owns_name_; }

 private:
  SharedMemoryRegion(std::string name, uint8_t* data, size_t size, bool owns_name)
      : name_(std::move(name)), data_(data), size_(size), owns_name_(owns_name) {}
  void Release();

  std::string name_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owns_name_ = false;
  int owner_fd_ = -1;  // creator only: holds the owner's flock
};

// Unlinks every "/pdserve-kv-..." object in /dev/shm whose creator has ended (no process holds
// its owner lock; a creator locks before it sizes the object, so empty ones are left alone).
// Mappings that others still hold stay valid; the memory is freed with the last of them.
// Returns the names removed; objects it cannot open are left alone.
std::vector<std::string> RemoveOrphanedRegions();

// This boot's id (/proc/sys/kernel/random/boot_id, trimmed: 36 characters). Two processes may
// share a region only when their boot ids are equal and the object opens; errors name the file.
absl::StatusOr<std::string> HostBootId();

}  // namespace pdserve::kv_transfer
