#include "ref/io/temporary_cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

namespace moeref {

namespace {

enum SlotState : int { kFree, kFilling, kArmed };

struct Slot {
  std::atomic<int> state{kFree};
  char path[PATH_MAX] = {};
};

std::array<Slot, kMaxTemporaries> slots;

// Staging directories hold a golden set, or a tree of them: a few levels at most.
constexpr int kMaxDepth = 8;

void remove_path(int parent_fd, const char* name, int depth);

// Everything inside an open directory. Entries are removed while the directory is read, so it is
// read again from the start until a pass finds nothing left (or nothing it can remove).
void remove_entries(int dir_fd, int depth) {
  alignas(8) char buffer[4096];
  for (int pass = 0; pass < 4; ++pass) {
    if (lseek(dir_fd, 0, SEEK_SET) != 0) return;
    bool found = false;
    ssize_t length = 0;
    while ((length = getdents64(dir_fd, buffer, sizeof buffer)) > 0) {
      for (ssize_t offset = 0; offset < length;) {
        const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
        offset += entry->d_reclen;
        if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) {
          continue;
        }
        found = true;
        remove_path(dir_fd, entry->d_name, depth);
      }
    }
    if (!found) return;
  }
}

void remove_path(int parent_fd, const char* name, int depth) {
  if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT) return;
  if (errno != EISDIR && errno != EPERM) return;
  if (depth < kMaxDepth) {
    const int dir_fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd >= 0) {
      remove_entries(dir_fd, depth + 1);
      close(dir_fd);
    }
  }
  unlinkat(parent_fd, name, AT_REMOVEDIR);
}

void remove_temporaries_and_die(int signal_number) {
  for (Slot& slot : slots) {
    if (slot.state.load() == kArmed) remove_path(AT_FDCWD, slot.path, 0);
  }
  signal(signal_number, SIG_DFL);
  raise(signal_number);  // delivered when this handler returns: the process ends by the signal
}

}  // namespace

void remove_temporaries_on_interrupt() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction previous {};
      sigaction(signal_number, nullptr, &previous);
      if (previous.sa_handler == SIG_IGN) continue;  // e.g. SIGHUP under nohup stays ignored
      struct sigaction action {};
      action.sa_handler = remove_temporaries_and_die;
      sigemptyset(&action.sa_mask);
      for (const int blocked : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&action.sa_mask, blocked);
      sigaction(signal_number, &action, nullptr);
    }
  });
}

RemovedOnInterrupt::RemovedOnInterrupt(const std::filesystem::path& path) {
  const std::string absolute = std::filesystem::absolute(path).string();
  if (absolute.size() >= PATH_MAX) {
    throw std::runtime_error(absolute + ": path too long for a temporary");
  }
  for (slot_ = 0; slot_ < slots.size(); ++slot_) {
    int expected = kFree;
    if (slots[slot_].state.compare_exchange_strong(expected, kFilling)) {
      std::memcpy(slots[slot_].path, absolute.c_str(), absolute.size() + 1);
      slots[slot_].state.store(kArmed);
      return;
    }
  }
  throw std::runtime_error(absolute + ": more than " + std::to_string(kMaxTemporaries) +
                           " temporaries at once");
}

RemovedOnInterrupt::~RemovedOnInterrupt() { slots[slot_].state.store(kFree); }

}  // namespace moeref
