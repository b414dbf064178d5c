// Temporaries that an interrupted process removes before it dies.
//
// A file or directory being written beside its target (ref/io/atomic_file.h) is registered for as
// long as it exists under its temporary name. Once remove_temporaries_on_interrupt() has installed
// its handlers, SIGINT, SIGTERM and SIGHUP first remove every registered path (a directory with
// everything in it) and then end the process by the same signal, so the shell still sees it
// killed. The handler uses only async-signal-safe system calls. SIGKILL and power loss cannot be
// caught; what they leave is hidden (its name starts with '.') and removed by the next write of
// the same target (ref/io/atomic_file.h).
//
// At most kMaxTemporaries paths are registered at once; registering one more throws
// std::runtime_error naming it, as does a path too long to store.
#pragma once

#include <cstddef>
#include <filesystem>

namespace moeref {

constexpr size_t kMaxTemporaries = 32;

// Installs the handlers (once per process; later calls do nothing). Programs call it; the library
// never installs signal handlers by itself.
void remove_temporaries_on_interrupt();

// Registers `path` for removal on interrupt from construction to destruction. The destructor
// does not remove the path itself: that is the writer's job on failure, and on success the path
// has been renamed away.
class RemovedOnInterrupt {
 public:
  explicit RemovedOnInterrupt(const std::filesystem::path& path);
  ~RemovedOnInterrupt();
  RemovedOnInterrupt(const RemovedOnInterrupt&) = delete;
  RemovedOnInterrupt& operator=(const RemovedOnInterrupt&) = delete;

 private:
  size_t slot_;
};

}  // namespace moeref
