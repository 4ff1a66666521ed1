#include "proto/base/file_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::ScopedUmask;
using ::invnet::testing::ScratchDirectory;
using ::invnet::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class FileIoTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.Path(name); }
  std::vector<std::string> Listing() const { return dir_.Listing(); }

  ScratchDirectory dir_{"file_io"};
};

TEST_F(FileIoTest, AtomicWriteReplacesTheFileWithMode0644AndLeavesNoTemporary) {
  const ScopedUmask usual(022);
  ASSERT_THAT(WriteFileAtomically(Path("f"), "old"), IsOk());
  ASSERT_THAT(WriteFileAtomically(Path("f"), "new contents"), IsOk());
  EXPECT_THAT(Listing(), ElementsAre("f"));
  EXPECT_EQ(*ReadFileToString(Path("f")), "new contents");
  struct stat info;
  ASSERT_EQ(::stat(Path("f").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
}

TEST_F(FileIoTest, FailedAtomicWriteKeepsTheOldContentAndRemovesTheTemporary) {
  // rename() onto a non-empty directory fails after the temporary file was written and synced.
  ASSERT_EQ(::mkdir(Path("taken").c_str(), 0755), 0);
  dir_.Write("taken/keep", "precious");
  EXPECT_THAT(
      WriteFileAtomically(Path("taken"), "new"),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cannot rename into place")));
  EXPECT_THAT(Listing(), ElementsAre("taken"));
  EXPECT_EQ(*ReadFileToString(Path("taken/keep")), "precious");
}

TEST_F(FileIoTest, WriteErrorsNameThePathAndCarryTheRightCode) {
  EXPECT_THAT(WriteFileAtomically(Path("no/such/dir/f"), "x"),
              StatusIs(absl::StatusCode::kNotFound, StartsWith(Path("no/such/dir/f"))));
  EXPECT_THAT(WriteFileAtomically(Path("sub/"), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is a directory name")));
  EXPECT_THAT(WriteFileAtomically("", "x"), StatusIs(absl::StatusCode::kInvalidArgument));
  if (::geteuid() != 0) {  // root writes into read-only directories
    ASSERT_EQ(::mkdir(Path("read_only").c_str(), 0555), 0);
    EXPECT_THAT(WriteFileAtomically(Path("read_only/f"), "x"),
                StatusIs(absl::StatusCode::kPermissionDenied, StartsWith(Path("read_only/f"))));
  }
}

TEST_F(FileIoTest, ReadIsBoundedAndNamesThePath) {
  dir_.Write("ten", "0123456789");
  EXPECT_EQ(*ReadFileToString(Path("ten"), 10), "0123456789");
  EXPECT_THAT(ReadFileToString(Path("ten"), 9),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit of 9 bytes")));
  EXPECT_THAT(ReadFileToString(Path("missing")),
              StatusIs(absl::StatusCode::kNotFound, StartsWith(Path("missing"))));
  dir_.Write("empty", "");
  EXPECT_EQ(*ReadFileToString(Path("empty")), "");
}

TEST_F(FileIoTest, ReadsFilesWhoseSizeIsUnknownInAdvance) {
  // /proc files report size 0: a reader trusting st_size would return "".
  struct stat info;
  ASSERT_EQ(::stat("/proc/self/status", &info), 0);
  ASSERT_EQ(info.st_size, 0);
  absl::StatusOr<std::string> status = ReadFileToString("/proc/self/status");
  ASSERT_THAT(status.status(), IsOk());
  EXPECT_THAT(*status, HasSubstr("Name:"));
  // The bound holds there too, counted while reading.
  EXPECT_THAT(ReadFileToString("/proc/self/status", 8),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(FileIoTest, SyncDirectoryOfAMissingDirectoryIsNotFound) {
  EXPECT_THAT(SyncDirectory(dir_.path()), IsOk());
  EXPECT_THAT(SyncDirectory(Path("missing")),
              StatusIs(absl::StatusCode::kNotFound, StartsWith(Path("missing"))));
}

TEST(ErrnoToStatus, MapsErrnoToCanonicalCodes) {
  EXPECT_THAT(ErrnoToStatus(ENOSPC, "write f"), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(ErrnoToStatus(EDQUOT, "write f"), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(ErrnoToStatus(EACCES, "open f"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ErrnoToStatus(EROFS, "open f"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ErrnoToStatus(ENOENT, "open f"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ErrnoToStatus(EISDIR, "rename f"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ErrnoToStatus(ENAMETOOLONG, "open f"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ErrnoToStatus(EIO, "read f"),
              StatusIs(absl::StatusCode::kInternal, "read f: Input/output error"));
}

}  // namespace
}  // namespace invnet
