// Writing files and directories so that readers never see half of one and nothing is left behind.
//
// The contents go to a temporary beside the target (same directory, so the rename stays on one
// file system), named ".<name>.tmp.<pid>": hidden, and unique to this process. A file is written,
// fsync'd and closed; only then is it renamed over the target, and the directory fsync'd, so that
// even after a machine crash the target holds the old contents or the new, never a torn file.
//
// Every failure throws std::runtime_error naming the target and the reason (with the system's
// words for it) and removes the temporary. Temporaries are registered with
// ref/io/temporary_cleanup.h, so SIGINT, SIGTERM and SIGHUP remove them too once a program has
// asked for that. Creating a temporary first removes those that a process no longer running (killed
// by SIGKILL, or a machine crash) left for the same target.
//
// Whether a target may be replaced at all is the caller's decision: these functions replace what
// is there.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string_view>
#include <vector>

namespace moeref {

class RemovedOnInterrupt;

// A file written in full and synced beside its target, not yet visible there.
class StagedFile {
 public:
  // `write` fills the stream; if it throws or a write fails, the temporary is removed.
  StagedFile(const std::filesystem::path& target, const std::function<void(std::ostream&)>& write);
  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&&) = delete;
  ~StagedFile();  // removes the temporary unless it was published

  const std::filesystem::path& target() const { return target_; }
  // Renames the temporary over the target and syncs the directory.
  void publish();

 private:
  friend void publish_together(std::vector<StagedFile>& files);
  void rename_into_place();
  void discard();

  std::filesystem::path target_;
  std::filesystem::path temporary_;
  std::unique_ptr<RemovedOnInterrupt> registration_;
};

// Publishes every file or none: each existing target is first kept under a hard link
// (".<name>.old.<pid>"); if a rename fails, the targets already replaced get their old contents
// back (or are removed, where there was none) before the error is thrown.
void publish_together(std::vector<StagedFile>& files);

void write_file_atomically(const std::filesystem::path& target,
                           const std::function<void(std::ostream&)>& write);

void write_file_atomically(const std::filesystem::path& target, std::string_view contents);

// A directory filled beside its target (whose missing parents it creates), then published in one
// step.
class StagedDirectory {
 public:
  explicit StagedDirectory(const std::filesystem::path& target);
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  ~StagedDirectory();  // removes the temporary directory and its contents unless published

  // Where the contents go until publish().
  const std::filesystem::path& path() const { return temporary_; }
  // A new target is renamed into place; an existing one is exchanged with the temporary in one
  // step (renameat2 RENAME_EXCHANGE) and its old contents then removed. Where the file system
  // cannot exchange, the old target is renamed aside to ".<name>.old.<pid>" first, so a crash
  // between the two renames leaves it there, hidden, rather than lost.
  void publish();

 private:
  std::filesystem::path target_;
  std::filesystem::path temporary_;
  std::unique_ptr<RemovedOnInterrupt> registration_;
};

}  // namespace moeref
