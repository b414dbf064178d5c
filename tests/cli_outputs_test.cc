// What the commands that write files may replace (docs/outputs.md): never their own inputs, never
// a directory that is not a golden set, and an existing output only with --force. Each refusal is
// a usage error (exit 2) that names the option and the path, and leaves every file as it was.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "golden/golden_set.h"
#include "ref/io/config.h"
#include "ref/io/hf_interop.h"
#include "ref/io/safetensors.h"
#include "ref/model/weights.h"
#include "tests/cli_runner.h"

namespace moeref::cli_tests {
namespace {

using ::testing::HasSubstr;

const fs::path kCommittedSet = kSourceDir / "golden/sets/tiny-mqa-moe";

// Every file under `dir` (hidden ones included) and its bytes.
std::map<fs::path, std::string> snapshot(const fs::path& dir) {
  std::map<fs::path, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) files[entry.path()] = read_file(entry.path());
  }
  return files;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

fs::path copy_of_tiny(const fs::path& dir) {
  fs::copy_file(kTiny, dir / "tiny.json");
  return dir / "tiny.json";
}

fs::path copy_of_committed_set(const fs::path& dir) {
  fs::copy(kCommittedSet, dir / "set", fs::copy_options::recursive);
  return dir / "set";
}

fs::path tiny_weights(const fs::path& dir) {
  const ModelConfig config = load_config(kTiny);
  save_weights(config, init_weights(config), dir / "tiny.safetensors");
  return dir / "tiny.safetensors";
}

fs::path tiny_hf_directory(const fs::path& dir) {
  const ModelConfig config = load_config(kTiny);
  export_hf(config, init_weights(config), dir / "hf");
  return dir / "hf";
}

struct RefusedCase {
  const char* what;
  // Makes the files the case needs under the directory; returns moeref's arguments.
  std::function<std::string(const fs::path&)> arguments;
  const char* message;  // in stderr, besides the option
  const char* option;
};

const std::vector<RefusedCase>& refused_cases() {
  static const std::vector<RefusedCase> cases = {
      {"golden --out a directory of other files",
       [](const fs::path& d) {
         fs::create_directory(d / "mine");
         write_text(d / "mine/notes.txt", "precious");
         return "golden " + quote(kTiny) + " --out " + quote(d / "mine");
       },
       "holds files that are not a golden set", "--out"},
      {"golden --out a directory of other files, --force",
       [](const fs::path& d) {
         fs::create_directory(d / "mine");
         write_text(d / "mine/notes.txt", "precious");
         return "golden " + quote(kTiny) + " --out " + quote(d / "mine") + " --force";
       },
       "holds files that are not a golden set", "--out"},
      {"golden --out a file",
       [](const fs::path& d) {
         write_text(d / "notes.txt", "precious");
         return "golden " + quote(kTiny) + " --out " + quote(d / "notes.txt");
       },
       "exists and is not a directory", "--out"},
      {"golden --out a golden set with a file of someone else's in it",
       [](const fs::path& d) {
         write_text(copy_of_committed_set(d) / "notes.txt", "precious");
         return "golden " + quote(kTiny) + " --out " + quote(d / "set");
       },
       "holds files that are not a golden set", "--out"},
      {"golden --out an earlier golden set without --force",
       [](const fs::path& d) {
         return "golden " + quote(kTiny) + " --out " + quote(copy_of_committed_set(d));
       },
       "give --force", "--out"},
      {"golden --out a symbolic link to an earlier golden set",
       [](const fs::path& d) {
         fs::create_directory_symlink(copy_of_committed_set(d), d / "link");
         return "golden " + quote(kTiny) + " --out " + quote(d / "link") + " --force";
       },
       "is a symbolic link", "--out"},
      {"golden --ops --out a model set",
       [](const fs::path& d) { return "golden --ops --out " + quote(copy_of_committed_set(d)); },
       "is a golden set, not a directory of the op cases' sets", "--out"},
      {"golden --out the directory that holds the config",
       [](const fs::path& d) {
         fs::create_directory(d / "work");
         fs::copy_file(kTiny, d / "work/tiny.json");
         return "golden " + quote(d / "work/tiny.json") + " --out " + quote(d / "work");
       },
       "an input of this command", "--out"},
      {"init X --out X",
       [](const fs::path& d) {
         const fs::path config = copy_of_tiny(d);
         return "init " + quote(config) + " --out " + quote(config);
       },
       "is also an input", "--out"},
      {"init X --out X --force",
       [](const fs::path& d) {
         const fs::path config = copy_of_tiny(d);
         return "init " + quote(config) + " --out " + quote(config) + " --force";
       },
       "is also an input", "--out"},
      {"init X --out (a hard link to X)",
       [](const fs::path& d) {
         const fs::path config = copy_of_tiny(d);
         fs::create_hard_link(config, d / "other-name.json");
         return "init " + quote(config) + " --out " + quote(d / "other-name.json");
       },
       "is also an input", "--out"},
      {"init --out an existing file without --force",
       [](const fs::path& d) {
         write_text(d / "w.safetensors", "precious");
         return "init " + quote(kTiny) + " --out " + quote(d / "w.safetensors");
       },
       "exists; give --force to replace it", "--out"},
      {"init --out a directory",
       [](const fs::path& d) {
         fs::create_directory(d / "w.safetensors");
         return "init " + quote(kTiny) + " --out " + quote(d / "w.safetensors");
       },
       "is a directory", "--out"},
      {"trace --weights W --out W",
       [](const fs::path& d) {
         const fs::path weights = tiny_weights(d);
         return "trace " + quote(kTiny) + " --weights " + quote(weights) + " --tokens 1,2 --out " +
                quote(weights);
       },
       "is also an input", "--out"},
      {"candidate SET --out SET/trace.safetensors",
       [](const fs::path& d) {
         const fs::path set = copy_of_committed_set(d);
         return "candidate " + quote(set) + " --emulate bf16 --out " +
                quote(set / "trace.safetensors");
       },
       "which this command reads", "--out"},
      {"candidate SET --out SET/new.safetensors",
       [](const fs::path& d) {
         const fs::path set = copy_of_committed_set(d);
         return "candidate " + quote(set) + " --emulate bf16 --out " +
                quote(set / "new.safetensors");
       },
       "which this command reads", "--out"},
      {"anchor SET CANDIDATE --out CANDIDATE",
       [](const fs::path& d) {
         const fs::path set = copy_of_committed_set(d);
         fs::copy_file(set / "trace.safetensors", d / "candidate.safetensors");
         return "anchor " + quote(set) + " " + quote(d / "candidate.safetensors") + " --out " +
                quote(d / "candidate.safetensors");
       },
       "is also an input", "--out"},
      {"import-hf DIR --config-out DIR/config.json",
       [](const fs::path& d) {
         const fs::path hf = tiny_hf_directory(d);
         return "import-hf " + quote(hf) + " --config-out " + quote(hf / "config.json") +
                " --weights-out " + quote(d / "w.safetensors");
       },
       "which this command reads", "--config-out"},
      {"import-hf with both outputs the same file",
       [](const fs::path& d) {
         const fs::path hf = tiny_hf_directory(d);
         return "import-hf " + quote(hf) + " --config-out " + quote(d / "x") + " --weights-out " +
                quote(d / "x");
       },
       "is the same file as --config-out", "--weights-out"},
      {"import-hf whose config output is a directory writes no weights either",
       [](const fs::path& d) {
         const fs::path hf = tiny_hf_directory(d);
         fs::create_directories(d / "config.json/inside");
         return "import-hf " + quote(hf) + " --config-out " + quote(d / "config.json") +
                " --weights-out " + quote(d / "w.safetensors");
       },
       "is a directory", "--config-out"},
      {"export-hf over an earlier export without --force",
       [](const fs::path& d) {
         return "export-hf " + quote(kTiny) + " --out " + quote(tiny_hf_directory(d));
       },
       "exists; give --force to replace it", "--out"},
      {"export-hf --weights W --out (the directory of W, as model.safetensors)",
       [](const fs::path& d) {
         const fs::path hf = tiny_hf_directory(d);
         return "export-hf " + quote(kTiny) + " --weights " + quote(hf / "model.safetensors") +
                " --out " + quote(hf) + " --force";
       },
       "is also an input", "--out"},
  };
  return cases;
}

TEST(CliOutputs, RefusalsAreUsageErrorsThatChangeNothing) {
  for (const RefusedCase& c : refused_cases()) {
    SCOPED_TRACE(c.what);
    const TempDir temp;
    const std::string arguments = c.arguments(temp.path());
    const std::map<fs::path, std::string> before = snapshot(temp.path());
    const CliResult r = run_cli(arguments);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_THAT(r.err, HasSubstr(c.option));
    EXPECT_TRUE(snapshot(temp.path()) == before) << "files changed: " << describe(r);
  }
}

TEST(CliOutputs, ForceReplacesAnExistingFile) {
  const TempDir temp;
  const fs::path out = temp.path() / "w.safetensors";
  write_text(out, "an earlier file");
  const CliResult r = run_cli("init " + quote(kTiny) + " --out " + quote(out) + " --force");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(SafetensorsFile::read(out).tensors().size(),
            weight_records(load_config(kTiny), init_weights(load_config(kTiny))).size());
  EXPECT_EQ(std::distance(fs::directory_iterator(temp.path()), fs::directory_iterator()), 1)
      << "a temporary was left behind";
}

TEST(CliOutputs, ForceReplacesBothFilesOfAnEarlierExport) {
  const TempDir temp;
  const fs::path hf = temp.path() / "hf";
  fs::create_directory(hf);
  write_text(hf / "config.json", "{}");
  write_text(hf / "model.safetensors", "old");
  write_text(hf / "tokenizer.json", "kept");
  const CliResult r = run_cli("export-hf " + quote(kTiny) + " --out " + quote(hf) + " --force");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(import_hf(hf).config, load_config(kTiny));
  EXPECT_EQ(read_file(hf / "tokenizer.json"), "kept");
  EXPECT_EQ(std::distance(fs::directory_iterator(hf), fs::directory_iterator()), 3);
}

// `golden --ops` builds its whole tree in a hidden directory beside the target, which a SIGTERM
// removes before the program dies by the signal.
TEST(CliOutputs, SigtermLeavesNoTemporaryBehind) {
  const TempDir temp;
  const fs::path out = temp.path() / "ops";
  const pid_t child = fork();
  if (child == 0) {
    freopen("/dev/null", "w", stdout);
    execl(MOEREF_CLI, MOEREF_CLI, "golden", "--ops", "--out", out.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(child, 0);
  // Wait for the hidden directory to appear (or the program to end, which fails below).
  bool staged = false;
  while (!staged && waitpid(child, nullptr, WNOHANG) == 0) {
    for (const auto& entry : fs::directory_iterator(temp.path())) {
      staged = staged || entry.path().filename().string().rfind(".ops.tmp.", 0) == 0;
    }
    if (!staged) usleep(1000);
  }
  ASSERT_TRUE(staged) << "the program ended before its temporary directory was seen";
  kill(child, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
  EXPECT_TRUE(fs::is_empty(temp.path()));
}

}  // namespace
}  // namespace moeref::cli_tests
