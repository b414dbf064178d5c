#include "ref/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>

#include "ref/io/temporary_cleanup.h"

namespace moeref {

namespace fs = std::filesystem;

namespace {

// The reason of the last failed system call, in the system's words, where there is one.
[[noreturn]] void fail_with_errno(const std::string& what) {
  if (errno == 0) throw std::runtime_error(what);
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Appended piece by piece: GCC 12 warns falsely (-Wrestrict) about "." + std::string.
std::string temporary_prefix(const fs::path& target, std::string_view tag) {
  std::string prefix = ".";
  prefix += target.filename().string();
  prefix += '.';
  prefix += tag;
  prefix += '.';
  return prefix;
}

fs::path temporary_sibling(const fs::path& target, std::string_view tag) {
  return target.parent_path() / (temporary_prefix(target, tag) + std::to_string(getpid()));
}

fs::path directory_of(const fs::path& target) {
  return target.parent_path().empty() ? fs::path(".") : target.parent_path();
}

// A rename is durable once the directory that holds the name is synced.
void sync_directory(const fs::path& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_with_errno(dir.string() + ": cannot open the directory to sync it");
  const int synced = fsync(fd);
  const int saved_errno = errno;
  close(fd);
  errno = saved_errno;
  // Some file systems cannot sync a directory (EINVAL); their renames are as durable as they get.
  if (synced != 0 && errno != EINVAL) fail_with_errno(dir.string() + ": cannot sync");
}

// ".<name>.tmp.<pid>" siblings of `target` whose process is gone. A pid that is running again
// (reused) keeps its temporary until a later write finds it gone.
void remove_stale_temporaries(const fs::path& target) {
  const std::string prefix = temporary_prefix(target, "tmp");
  std::error_code error;
  for (fs::directory_iterator it(directory_of(target), error), end; !error && it != end;
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.find_first_not_of("0123456789") != std::string::npos || pid_text.size() > 9) {
      continue;
    }
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    fs::remove_all(it->path(), ignored);
  }
}

}  // namespace

StagedFile::StagedFile(const fs::path& target, const std::function<void(std::ostream&)>& write)
    : target_(target), temporary_(temporary_sibling(target, "tmp")) {
  try {
    remove_stale_temporaries(target_);
    registration_ = std::make_unique<RemovedOnInterrupt>(temporary_);
    const int fd = open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) fail_with_errno("cannot open for writing");
    try {
      {
        errno = 0;
        std::ofstream out(temporary_, std::ios::binary);
        if (!out) fail_with_errno("cannot open " + temporary_.string() + " for writing");
        write(out);
        out.flush();
        if (!out) fail_with_errno("write failed");
      }
      if (fsync(fd) != 0) fail_with_errno("cannot sync");
    } catch (...) {
      close(fd);
      throw;
    }
    if (close(fd) != 0) fail_with_errno("cannot close");
  } catch (const std::exception& e) {
    discard();
    throw std::runtime_error(target_.string() + ": " + e.what());
  }
}

StagedFile::StagedFile(StagedFile&& other) noexcept
    : target_(std::move(other.target_)),
      temporary_(std::move(other.temporary_)),
      registration_(std::move(other.registration_)) {
  other.temporary_.clear();
}

StagedFile::~StagedFile() { discard(); }

void StagedFile::discard() {
  if (temporary_.empty()) return;
  std::error_code ignored;
  fs::remove(temporary_, ignored);
  temporary_.clear();
  registration_.reset();
}

void StagedFile::rename_into_place() {
  if (rename(temporary_.c_str(), target_.c_str()) != 0) {
    fail_with_errno(target_.string() + ": cannot rename into place");
  }
  temporary_.clear();
  registration_.reset();
}

void StagedFile::publish() {
  rename_into_place();
  sync_directory(directory_of(target_));
}

void publish_together(std::vector<StagedFile>& files) {
  std::vector<fs::path> backups;  // empty where the target did not exist
  std::vector<std::unique_ptr<RemovedOnInterrupt>> registrations;
  size_t renamed = 0;
  const auto remove_backups = [&] {
    std::error_code ignored;
    for (const fs::path& backup : backups) {
      if (!backup.empty()) fs::remove(backup, ignored);
    }
  };
  try {
    for (const StagedFile& file : files) {
      fs::path backup = temporary_sibling(file.target(), "old");
      std::error_code ignored;
      fs::remove(backup, ignored);
      registrations.push_back(std::make_unique<RemovedOnInterrupt>(backup));
      if (link(file.target().c_str(), backup.c_str()) != 0) {
        if (errno != ENOENT) fail_with_errno(file.target().string() + ": cannot keep a backup");
        backup.clear();
      }
      backups.push_back(std::move(backup));
    }
    for (StagedFile& file : files) {
      file.rename_into_place();
      ++renamed;
    }
  } catch (const std::exception&) {
    for (size_t i = 0; i < renamed; ++i) {
      const fs::path& target = files[i].target();
      if (backups[i].empty()) {
        std::error_code ignored;
        fs::remove(target, ignored);
      } else if (rename(backups[i].c_str(), target.c_str()) == 0) {
        backups[i].clear();
      }
    }
    remove_backups();
    throw;
  }
  remove_backups();
  std::set<fs::path> directories;
  for (const StagedFile& file : files) directories.insert(directory_of(file.target()));
  for (const fs::path& dir : directories) sync_directory(dir);
}

void write_file_atomically(const fs::path& target,
                           const std::function<void(std::ostream&)>& write) {
  StagedFile(target, write).publish();
}

void write_file_atomically(const fs::path& target, std::string_view contents) {
  write_file_atomically(target, [&](std::ostream& out) {
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  });
}

StagedDirectory::StagedDirectory(const fs::path& target)
    : target_(target.filename().empty() ? target.parent_path() : target),
      temporary_(temporary_sibling(target_, "tmp")) {
  try {
    if (!target_.parent_path().empty()) fs::create_directories(target_.parent_path());
    remove_stale_temporaries(target_);
    registration_ = std::make_unique<RemovedOnInterrupt>(temporary_);
    if (mkdir(temporary_.c_str(), 0777) != 0)
      fail_with_errno("cannot create " + temporary_.string());
  } catch (const std::exception& e) {
    registration_.reset();
    throw std::runtime_error(target_.string() + ": " + e.what());
  }
}

StagedDirectory::~StagedDirectory() {
  if (!registration_) return;
  std::error_code ignored;
  fs::remove_all(temporary_, ignored);
}

void StagedDirectory::publish() {
  try {
    sync_directory(temporary_);
    std::error_code error;
    const bool replacing = fs::exists(fs::symlink_status(target_, error));
    if (!replacing) {
      if (rename(temporary_.c_str(), target_.c_str()) != 0) fail_with_errno("cannot rename");
    } else if (renameat2(AT_FDCWD, temporary_.c_str(), AT_FDCWD, target_.c_str(),
                         RENAME_EXCHANGE) == 0) {
      std::error_code ignored;  // published; what is left is hidden and removed by a later write
      fs::remove_all(temporary_, ignored);  // now the old contents
    } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
      const fs::path previous = temporary_sibling(target_, "old");
      fs::rename(target_, previous);
      fs::rename(temporary_, target_);
      std::error_code ignored;
      fs::remove_all(previous, ignored);
    } else {
      fail_with_errno("cannot exchange with " + temporary_.string());
    }
    registration_.reset();
    sync_directory(directory_of(target_));
  } catch (const std::exception& e) {
    throw std::runtime_error(target_.string() + ": " + e.what());
  }
}

}  // namespace moeref
