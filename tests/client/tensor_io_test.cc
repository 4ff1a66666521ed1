#include "client/tensor_io.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/base/file_io.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::ScopedUmask;
using ::invnet::testing::ScratchDirectory;
using ::invnet::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class TensorIoTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.Path(name); }
  void WriteRaw(const std::string& name, const std::string& bytes) const {
    dir_.Write(name, bytes);
  }
  std::vector<std::string> Listing() const { return dir_.Listing(); }

  ScratchDirectory dir_{"tensor_io"};
};

// A .npy file with the given header dict and raw data, version `major`.0.
std::string NpyBytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict + "\n";
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const uint32_t length = static_cast<uint32_t>(header.size());
  out.push_back(static_cast<char>(length & 0xff));
  out.push_back(static_cast<char>((length >> 8) & 0xff));
  if (major >= 2) {
    out.push_back(static_cast<char>((length >> 16) & 0xff));
    out.push_back(static_cast<char>((length >> 24) & 0xff));
  }
  return out + header + data;
}

template <typename T>
std::string RawValues(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

const DenseTensor kMatrix{{3, 2}, {1.0f, -2.5f, 3.25e-8f, 4e20f, 0.1f, -0.0f}};

TEST_F(TensorIoTest, FormatFromExtension) {
  EXPECT_EQ(*TensorFileFormatFromPath("a/b.npy"), TensorFileFormat::kNpy);
  EXPECT_EQ(*TensorFileFormatFromPath("B.CSV"), TensorFileFormat::kCsv);
  EXPECT_THAT(TensorFileFormatFromPath("data.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("data.txt: unknown file")));
}

TEST_F(TensorIoTest, NpyRoundTrip) {
  ASSERT_THAT(WriteMatrix(Path("x.npy"), kMatrix), IsOk());
  absl::StatusOr<DenseTensor> back = ReadMatrix(Path("x.npy"));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->shape, kMatrix.shape);
  EXPECT_EQ(back->values, kMatrix.values);
}

TEST_F(TensorIoTest, NpyWriteIsNumpyVersion1WithAlignedHeader) {
  const std::string bytes = EncodeNpy(kMatrix);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_length = static_cast<unsigned char>(bytes[8]) |
                               (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  EXPECT_EQ((10 + header_length) % 64, 0u);
  const std::string header = bytes.substr(10, header_length);
  EXPECT_THAT(header, StartsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }"));
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(bytes.size(), 10 + header_length + 6 * 4);
}

TEST_F(TensorIoTest, ReadsFloat64AsFloat32) {
  const std::vector<double> values = {0.1, -2.0, 1e300, 3.0};
  WriteRaw("f8.npy", NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
                              RawValues(values)));
  absl::StatusOr<DenseTensor> t = ReadMatrix(Path("f8.npy"));
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->shape, ElementsAre(2, 2));
  EXPECT_EQ(t->values[0], 0.1f);
  EXPECT_EQ(t->values[1], -2.0f);
  EXPECT_TRUE(std::isinf(t->values[2]));  // out of float range: read, and caught by Validate
  EXPECT_EQ(t->values[3], 3.0f);
}

TEST_F(TensorIoTest, ReadsVersion2And3) {
  const std::vector<float> values = {1, 2, 3};
  WriteRaw("v2.npy", NpyBytes("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3, 1)}",
                              RawValues(values), 2));
  absl::StatusOr<DenseTensor> t = ReadMatrix(Path("v2.npy"));
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->shape, ElementsAre(3, 1));
  EXPECT_THAT(t->values, ElementsAre(1, 2, 3));

  WriteRaw("v3.npy", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }",
                              RawValues(values), 3));
  ASSERT_THAT(ReadMatrix(Path("v3.npy")), IsOk());
}

// [3] could be one sample of dimension 3 or three of dimension 1: refused, saying how to fix it.
TEST_F(TensorIoTest, RefusesOneDimensionalArraysAsAmbiguous) {
  WriteRaw("v.npy", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                             RawValues(std::vector<float>{1, 2, 3})));
  EXPECT_THAT(ReadMatrix(Path("v.npy")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(StartsWith(Path("v.npy")),
                                        HasSubstr("1-D array of shape [3] is ambiguous"),
                                        HasSubstr("[1, 3]"), HasSubstr("[3, 1]"))));
}

TEST_F(TensorIoTest, RejectsBadNpyFiles) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
  const std::string data = RawValues(std::vector<float>{1, 2, 3, 4});
  struct Case {
    std::string name;
    std::string bytes;
    std::string message;
  };
  const std::string full = NpyBytes(dict, data);
  const std::vector<Case> cases = {
      {"magic.npy", "PK\x03\x04 not numpy at all", "bad magic"},
      {"short.npy", std::string("\x93NUMPY\x01", 7), "truncated header"},
      {"header.npy", full.substr(0, 30), "truncated header"},
      {"version.npy", NpyBytes(dict, data, 4), "unsupported .npy version 4.0"},
      {"fortran.npy", NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", data),
       "Fortran-order"},
      {"int.npy", NpyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", data),
       "dtype '<i8' is not supported"},
      {"big.npy", NpyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", data),
       "big-endian"},
      {"rank3.npy",
       NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }", data),
       "expected a 2-D array [batch, dim]"},
      {"data.npy", full.substr(0, full.size() - 1), "needs 4 values"},
      {"extra.npy", full + "xxxx", "needs 4 values"},
      {"dict.npy", NpyBytes("{'descr': '<f4', 'shape': (2, 2), }", data), "malformed header"},
      {"garbage.npy", NpyBytes("{'descr': '<f4' 'fortran_order': False}", data),
       "malformed header"},
      {"negative.npy",
       NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 2), }", data),
       "is negative"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    WriteRaw(c.name, c.bytes);
    EXPECT_THAT(ReadMatrix(Path(c.name)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(StartsWith(Path(c.name)), HasSubstr(c.message))));
  }
}

TEST_F(TensorIoTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadMatrix(Path("absent.npy")),
              StatusIs(absl::StatusCode::kNotFound, StartsWith(Path("absent.npy"))));
  EXPECT_THAT(ReadMatrix(Path("absent.csv")), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TensorIoTest, CsvRoundTripIsExact) {
  ASSERT_THAT(WriteMatrix(Path("x.csv"), kMatrix), IsOk());
  absl::StatusOr<DenseTensor> back = ReadMatrix(Path("x.csv"));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->shape, kMatrix.shape);
  EXPECT_EQ(back->values, kMatrix.values);  // shortest round-trip decimal forms
  EXPECT_EQ(EncodeCsv(DenseTensor{{2, 2}, {1, 0.5f, -3, 100}}), "1,0.5\n-3,100\n");
}

TEST_F(TensorIoTest, CsvSkipsHeaderBlankLinesAndCarriageReturns) {
  absl::StatusOr<DenseTensor> t = ParseCsv("x0, x1\r\n\r\n1, 2\r\n  3,4.5e1  \n\n", "in.csv");
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->shape, ElementsAre(2, 2));
  EXPECT_THAT(t->values, ElementsAre(1, 2, 3, 45));
}

TEST_F(TensorIoTest, CsvRejectsRaggedRowsNamingTheLine) {
  EXPECT_THAT(ParseCsv("a,b\n1,2\n3\n", "in.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "in.csv: line 3 has 1 values, expected 2 (as on line 2)"));
  WriteRaw("ragged.csv", "1,2,3\n4,5\n");
  EXPECT_THAT(
      ReadMatrix(Path("ragged.csv")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               ::testing::AllOf(StartsWith(Path("ragged.csv")), HasSubstr("line 2 has 2 values"))));
}

TEST_F(TensorIoTest, CsvRejectsNonNumericFieldsAfterTheHeader) {
  EXPECT_THAT(ParseCsv("1,2\n3,abc\n", "in.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "in.csv: line 2, field 2: 'abc' is not a number"));
  // A first line that is partly numeric is a broken row, not a header.
  EXPECT_THAT(ParseCsv("1,x\n3,4\n", "in.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1, field 2")));
  EXPECT_THAT(ParseCsv("1,,2\n", "in.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field 2: ''")));
  EXPECT_THAT(ParseCsv("x,y\n\n", "in.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no samples")));
}

TEST_F(TensorIoTest, WriteRejectsNonMatricesAndUnknownExtensions) {
  EXPECT_THAT(WriteMatrix(Path("v.npy"), DenseTensor{{3}, {1, 2, 3}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank-2")));
  EXPECT_THAT(WriteMatrix(Path("m.npy"), DenseTensor{{2, 2}, {1, 2, 3}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 4 values")));
  EXPECT_THAT(WriteMatrix(Path("m.bin"), kMatrix), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Listing(), ::testing::IsEmpty());
}

TEST_F(TensorIoTest, AtomicWriteReplacesTheFileAndLeavesNoTemporary) {
  const ScopedUmask usual(022);  // the mode below must not depend on the caller's umask
  ASSERT_THAT(WriteFileAtomically(Path("out.csv"), "old\n"), IsOk());
  ASSERT_THAT(WriteMatrix(Path("out.csv"), kMatrix), IsOk());
  EXPECT_THAT(Listing(), ElementsAre("out.csv"));
  EXPECT_EQ(*ReadFileToString(Path("out.csv")), EncodeCsv(kMatrix));
  struct stat info;
  ASSERT_EQ(::stat(Path("out.csv").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
}

TEST_F(TensorIoTest, FailedAtomicWriteKeepsTheOldContentAndCleansUp) {
  // rename() onto a non-empty directory fails after the temporary file was written.
  ASSERT_EQ(::mkdir(Path("taken.npy").c_str(), 0755), 0);
  WriteRaw("taken.npy/keep", "precious");
  EXPECT_THAT(WriteMatrix(Path("taken.npy"), kMatrix), ::testing::Not(IsOk()));
  EXPECT_THAT(Listing(), ElementsAre("taken.npy"));
  EXPECT_EQ(*ReadFileToString(Path("taken.npy/keep")), "precious");
}

TEST_F(TensorIoTest, WriteIntoMissingDirectoryIsNotFound) {
  EXPECT_THAT(WriteMatrix(Path("no/such/dir/x.npy"), kMatrix),
              StatusIs(absl::StatusCode::kNotFound, StartsWith(Path("no/such/dir/x.npy"))));
}

}  // namespace
}  // namespace invnet::client
