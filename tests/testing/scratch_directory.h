#ifndef INVNET_TESTS_TESTING_SCRATCH_DIRECTORY_H_
#define INVNET_TESTS_TESTING_SCRATCH_DIRECTORY_H_

// A fresh directory for one test under GoogleTest's TempDir(), removed with everything in it
// when the object goes. Header-only and torch-free, for every test tree.
//
//   ScratchDirectory dir("file_io");
//   WriteFileAtomically(dir.Path("f"), "x");
//   EXPECT_THAT(dir.Listing(), ElementsAre("f"));

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"

namespace invnet::testing {

class ScratchDirectory {
 public:
  explicit ScratchDirectory(const std::string& prefix = "invnet") {
    std::string pattern = ::testing::TempDir() + "/" + prefix + "_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp " << pattern << " failed";
    }
    path_ = pattern;
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string Path(const std::string& name) const { return path_ + "/" + name; }
  // Writes `bytes` to path()/name as they are (no atomicity: test set-up), returns the path.
  std::string Write(const std::string& name, const std::string& bytes) const {
    std::ofstream(Path(name), std::ios::binary) << bytes;
    return Path(name);
  }
  // The names directly in the directory, sorted (temporary files included).
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(path_, error)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

// Sets the process's umask for a scope (file-mode tests must not depend on the caller's).
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  const mode_t old_;
};

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_SCRATCH_DIRECTORY_H_
