// Writing files and golden sets without destroying anything (ref/io/atomic_file.h,
// ref/io/temporary_cleanup.h, golden/golden_set.h): files published together or not at all,
// temporaries removed on failure, on interrupt and after a killed process, and a golden set
// written only over an earlier golden set or an empty directory.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/golden_set.h"
#include "ref/io/atomic_file.h"
#include "ref/io/config.h"
#include "ref/io/hf_interop.h"
#include "ref/io/safetensors.h"
#include "ref/io/temporary_cleanup.h"
#include "ref/model/weights.h"
#include "tests/test_support.h"

namespace moeref {
namespace {

using test_support::read_file;
using test_support::TempDir;

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kTiny = fs::path(MOEREF_SOURCE_DIR) / "configs/tiny.json";

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The pid of a process that has exited and been reaped.
pid_t finished_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  return child;
}

TEST(PublishTogether, AFailedRenameRestoresTheFilesAlreadyReplaced) {
  const TempDir temp;
  const fs::path existing = temp.path() / "model.safetensors";
  const fs::path absent = temp.path() / "extra.json";
  const fs::path last = temp.path() / "config.json";
  write_text(existing, "old weights");
  write_text(last, "old config");
  std::vector<StagedFile> files;
  files.push_back(StagedFile(existing, [](std::ostream& out) { out << "new weights"; }));
  files.push_back(StagedFile(absent, [](std::ostream& out) { out << "new extra"; }));
  files.push_back(StagedFile(last, [](std::ostream& out) { out << "new config"; }));
  // The last rename fails: its temporary (named as ref/io/atomic_file.h says) is gone.
  fs::remove(temp.path() / (".config.json.tmp." + std::to_string(getpid())));
  try {
    publish_together(files);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(last.string()));
  }
  EXPECT_EQ(read_file(existing), "old weights");
  EXPECT_EQ(read_file(last), "old config");
  EXPECT_FALSE(fs::exists(absent));
  files.clear();
  EXPECT_EQ(names_in(temp.path()), (std::vector<std::string>{"config.json", "model.safetensors"}));
}

TEST(PublishTogether, ExportHfFailingOnItsConfigKeepsTheOldWeights) {
  const TempDir temp;
  const fs::path hf = temp.path() / "hf";
  fs::create_directories(hf / "config.json" / "not-empty");
  write_text(hf / "model.safetensors", "old weights");
  const ModelConfig config = load_config(kTiny);
  EXPECT_THROW(export_hf(config, init_weights(config), hf), std::runtime_error);
  EXPECT_EQ(read_file(hf / "model.safetensors"), "old weights");
  EXPECT_EQ(names_in(hf), (std::vector<std::string>{"config.json", "model.safetensors"}));
}

TEST(StagedFile, UnpublishedLeavesNothingAndAFailedWriteLeavesTheTarget) {
  const TempDir temp;
  const fs::path target = temp.path() / "out.bin";
  write_text(target, "old");
  {
    const StagedFile unpublished(target, [](std::ostream& out) { out << "new"; });
  }
  EXPECT_THROW(
      write_file_atomically(target, [](std::ostream&) { throw std::runtime_error("no space"); }),
      std::runtime_error);
  EXPECT_EQ(read_file(target), "old");
  EXPECT_EQ(names_in(temp.path()), std::vector<std::string>{"out.bin"});
}

TEST(StagedFile, TheNextWriteRemovesTheTemporaryOfAKilledProcess) {
  const TempDir temp;
  const fs::path target = temp.path() / "out.bin";
  const std::string dead = ".out.bin.tmp." + std::to_string(finished_pid());
  const std::string alive = ".out.bin.tmp." + std::to_string(getppid());
  const std::string other_target = ".other.bin.tmp." + std::to_string(finished_pid());
  for (const std::string& name : {dead, alive, other_target}) write_text(temp.path() / name, "x");
  write_file_atomically(target, "new");
  EXPECT_EQ(read_file(target), "new");
  EXPECT_FALSE(fs::exists(temp.path() / dead));
  EXPECT_TRUE(fs::exists(temp.path() / alive));  // its process may still be writing
  EXPECT_TRUE(fs::exists(temp.path() / other_target));
}

// Each runs in a forked child (a gtest death test) that the signal ends; the directory, made
// before the fork, is looked at here.
void interrupted_file_write(const fs::path& target) {
  remove_temporaries_on_interrupt();
  write_file_atomically(target, [](std::ostream& out) {
    out << "half";
    out.flush();
    raise(SIGTERM);
  });
}

void interrupted_directory_write(const fs::path& target) {
  remove_temporaries_on_interrupt();
  const StagedDirectory staging(target);
  write_file_atomically(staging.path() / "trace.safetensors", "data");
  fs::create_directory(staging.path() / "case");
  write_file_atomically(staging.path() / "case" / "manifest.json", "{}");
  raise(SIGINT);
}

TEST(RemovedOnInterrupt, SigtermDuringAWriteLeavesNoTemporary) {
  const TempDir temp;
  EXPECT_EXIT(interrupted_file_write(temp.path() / "out.bin"), testing::KilledBySignal(SIGTERM),
              "");
  EXPECT_TRUE(fs::is_empty(temp.path())) << names_in(temp.path()).front();
}

TEST(RemovedOnInterrupt, SigintDuringAStagedDirectoryLeavesNoTemporary) {
  const TempDir temp;
  EXPECT_EXIT(interrupted_directory_write(temp.path() / "set"), testing::KilledBySignal(SIGINT),
              "");
  EXPECT_TRUE(fs::is_empty(temp.path())) << names_in(temp.path()).front();
}

// A one-tensor op set, the smallest golden set there is.
void write_small_set(const fs::path& dir, float value) {
  nlohmann::json manifest = {{"format_version", golden::kFormatVersion},
                             {"kind", "op"},
                             {"case", "small"},
                             {"description", "file safety"}};
  const std::vector<TensorRecord> inputs = {make_f32_record("x", {1}, {&value, 1})};
  const std::vector<TensorRecord> trace = {make_f32_record("y", {1}, {&value, 1})};
  golden::write_golden_set(dir, manifest, {}, inputs, trace,
                           {{"y", "identity", golden::ToleranceClass::kExact}});
}

TEST(WriteGoldenSet, ReplacesAnEarlierSetAsAWhole) {
  const TempDir temp;
  const fs::path dir = temp.path() / "set";
  write_small_set(dir, 1.0f);
  EXPECT_EQ(golden::classify_golden_target(dir), golden::GoldenTarget::kGoldenSet);
  write_small_set(dir, 2.0f);
  const golden::GoldenSet set = golden::GoldenSet::open(dir);
  const float two = 2.0f;
  EXPECT_EQ(set.trace().at("y").bytes, make_f32_record("y", {1}, {&two, 1}).bytes);
  EXPECT_EQ(names_in(temp.path()), std::vector<std::string>{"set"});
}

TEST(WriteGoldenSet, RefusesADirectoryThatIsNotAGoldenSet) {
  struct Case {
    const char* what;
    std::function<void(const fs::path&)> make;
  };
  const std::vector<Case> cases = {
      {"a directory of other files",
       [](const fs::path& d) {
         fs::create_directory(d);
         write_text(d / "notes.txt", "precious");
       }},
      {"a file", [](const fs::path& d) { write_text(d, "precious"); }},
      {"a golden set with another file in it",
       [](const fs::path& d) {
         write_small_set(d, 1.0f);
         write_text(d / "notes.txt", "precious");
       }},
      {"a web app's manifest.json",
       [](const fs::path& d) {
         fs::create_directory(d);
         write_text(d / "manifest.json", R"({"name": "app", "files": {}})");
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const TempDir temp;
    const fs::path dir = temp.path() / "target";
    c.make(dir);
    EXPECT_EQ(golden::classify_golden_target(dir), golden::GoldenTarget::kOther);
    std::map<fs::path, std::string> before;
    for (const auto& e : fs::recursive_directory_iterator(temp.path())) {
      if (e.is_regular_file()) before[e.path()] = read_file(e.path());
    }
    try {
      write_small_set(dir, 2.0f);
      ADD_FAILURE() << "no error";
    } catch (const golden::GoldenError& e) {
      EXPECT_THAT(e.what(), HasSubstr(dir.string()));
      EXPECT_THAT(e.what(), HasSubstr("not a golden set"));
    }
    std::map<fs::path, std::string> after;
    for (const auto& e : fs::recursive_directory_iterator(temp.path())) {
      if (e.is_regular_file()) after[e.path()] = read_file(e.path());
    }
    EXPECT_TRUE(after == before);
  }
}

}  // namespace
}  // namespace moeref
