#include "models/archive.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The layout of archive.h, written out by hand, so the tests can build any file, hostile ones
// included, and check the writer against the documented format.
std::string U32(uint32_t v) {
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}
std::string U64(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}
std::string Header(absl::string_view kind, uint64_t entry_count, uint32_t version = 1) {
  return "INVNETAR" + U32(version) + U32(static_cast<uint32_t>(kind.size())) + std::string(kind) +
         U64(entry_count);
}
constexpr uint8_t kInt = 1, kDouble = 2, kString = 3, kTensor = 4;
std::string Entry(absl::string_view key, uint8_t type, absl::string_view payload) {
  return U32(static_cast<uint32_t>(key.size())) + std::string(key) +
         std::string(1, static_cast<char>(type)) + U64(payload.size()) + std::string(payload);
}
// A tensor payload: dtype code (1 f32, 2 f64, 3 i64), rank, dims, then `data`.
std::string TensorPayload(uint8_t code, const std::vector<uint64_t>& dims, absl::string_view data) {
  std::string out(1, static_cast<char>(code));
  out.push_back(static_cast<char>(dims.size()));
  for (uint64_t d : dims) out += U64(d);
  return out + std::string(data);
}
// `body` followed by its CRC-32: a file whose checksum is right whatever the body says.
std::string Sealed(const std::string& body) { return body + U32(Crc32(body)); }

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// A small archive with one entry of every type.
std::string SmallArchive() {
  ArchiveWriter w("test.kind");
  w.PutInt("i", -5);
  w.PutDouble("d", 0.1);
  w.PutString("s", "hello");
  w.PutTensor("t", at::arange(6, at::kFloat).view({2, 3}));
  return w.Finish();
}

TEST(ArchiveTest, Crc32MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
  EXPECT_EQ(Crc32("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
}

TEST(ArchiveTest, ValuesRoundTripAndTypesAreChecked) {
  ArchiveWriter w("test.kind");
  w.PutInt("i", -5);
  w.PutDouble("d", 0.1);
  w.PutString("s", std::string("a\0b", 3));
  w.PutTensor("t", at::arange(6, at::kLong).view({2, 3}));
  w.PutTensor("empty", at::zeros({0, 4}));
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(w.Finish(), "test.kind"));
  EXPECT_EQ(r.GetInt("i").value(), -5);
  EXPECT_EQ(r.GetDouble("d").value(), 0.1);
  EXPECT_EQ(r.GetString("s").value(), std::string("a\0b", 3));
  EXPECT_TRUE(at::equal(r.GetTensor("t").value(), at::arange(6, at::kLong).view({2, 3})));
  EXPECT_EQ(r.GetTensor("empty").value().sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_THAT(r.GetInt("d"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type")));
  EXPECT_THAT(r.GetInt("nope"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nope")));
  EXPECT_EQ(r.KeysWithPrefix("e"), (std::vector<std::string>{"empty"}));
}

TEST(ArchiveTest, ExtremeValuesRoundTripBitForBit) {
  const double denormal = std::numeric_limits<double>::denorm_min();
  ArchiveWriter w("test.kind");
  w.PutInt("min", std::numeric_limits<int64_t>::min());
  w.PutInt("max", std::numeric_limits<int64_t>::max());
  w.PutDouble("nan", std::numeric_limits<double>::quiet_NaN());
  w.PutDouble("inf", -std::numeric_limits<double>::infinity());
  w.PutDouble("negative_zero", -0.0);
  w.PutDouble("denormal", denormal);
  w.PutString("empty_string", "");
  w.PutString(std::string(1024, 'k'), "the longest key a reader accepts");
  w.PutDoubles("doubles", {1.5, -2.25, 1e300});
  w.PutDoubles("no_doubles", {});
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(w.Finish(), "test.kind"));
  EXPECT_EQ(r.GetInt("min").value(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(r.GetInt("max").value(), std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(std::isnan(r.GetDouble("nan").value()));
  EXPECT_EQ(r.GetDouble("inf").value(), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::signbit(r.GetDouble("negative_zero").value()));
  EXPECT_EQ(r.GetDouble("negative_zero").value(), 0.0);
  EXPECT_EQ(r.GetDouble("denormal").value(), denormal);
  EXPECT_EQ(r.GetString("empty_string").value(), "");
  EXPECT_EQ(r.GetString(std::string(1024, 'k')).value(), "the longest key a reader accepts");
  EXPECT_THAT(r.GetDoubles("doubles").value(), ElementsAre(1.5, -2.25, 1e300));
  EXPECT_THAT(r.GetDoubles("no_doubles").value(), IsEmpty());
}

TEST(ArchiveTest, TensorsKeepTheirDtypeShapeAndValuesOtherDtypesBecomeFloat64) {
  ArchiveWriter w("test.kind");
  const at::Tensor f32 = at::randn({3, 4}, at::kFloat);
  const at::Tensor f64 = at::randn({2, 1, 3}, at::kDouble);
  const at::Tensor i64 = at::tensor(
      {std::numeric_limits<int64_t>::min(), int64_t{0}, std::numeric_limits<int64_t>::max()});
  const at::Tensor scalar = at::scalar_tensor(2.5, at::kDouble);
  const at::Tensor rank8 = at::arange(256, at::kFloat).view({2, 2, 2, 2, 2, 2, 2, 2});
  // Not contiguous: stored as its row-major values, not its storage order.
  const at::Tensor transposed = at::arange(6, at::kFloat).view({2, 3}).t();
  const at::Tensor with_grad = at::randn({2}, at::kFloat).requires_grad_();
  w.PutTensor("f32", f32);
  w.PutTensor("f64", f64);
  w.PutTensor("i64", i64);
  w.PutTensor("scalar", scalar);
  w.PutTensor("rank8", rank8);
  w.PutTensor("transposed", transposed);
  w.PutTensor("with_grad", with_grad);
  w.PutTensor("i32", at::tensor({-3, 7}, at::kInt));
  w.PutTensor("bool", at::tensor({1.0, 0.0}, at::kDouble) > 0.5);
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(w.Finish(), "test.kind"));
  auto get = [&r](const std::string& key) {
    absl::StatusOr<at::Tensor> t = r.GetTensor(key);
    EXPECT_THAT(t, IsOk()) << key;
    return t.ok() ? *t : at::Tensor();
  };
  at::Tensor t = get("f32");
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(t, f32));
  t = get("f64");
  EXPECT_EQ(t.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::equal(t, f64));
  t = get("i64");
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(t, i64));
  t = get("scalar");
  EXPECT_EQ(t.dim(), 0);
  EXPECT_EQ(t.item<double>(), 2.5);
  EXPECT_TRUE(at::equal(get("rank8"), rank8));
  EXPECT_TRUE(at::equal(get("transposed"), transposed));
  EXPECT_TRUE(at::equal(get("with_grad"), with_grad.detach()));
  t = get("i32");
  EXPECT_EQ(t.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::equal(t, at::tensor({-3.0, 7.0}, at::kDouble)));
  t = get("bool");
  EXPECT_EQ(t.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::equal(t, at::tensor({1.0, 0.0}, at::kDouble)));
  // GetDoubles wants a vector.
  EXPECT_THAT(r.GetDoubles("f32"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'f32' must be a vector")));
}

TEST(ArchiveTest, TheWriterWritesTheDocumentedLayoutWithKeysInSortedOrder) {
  ArchiveWriter w("k");
  w.PutString("s", "ab");
  w.PutTensor("t", at::tensor({1.0f, 2.0f}));
  w.PutInt("i", 7);
  const std::string expected =
      Sealed(Header("k", 3) + Entry("i", kInt, U64(7)) + Entry("s", kString, "ab") +
             Entry("t", kTensor, TensorPayload(1, {2}, FloatBytes({1.0f, 2.0f}))));
  EXPECT_EQ(w.Finish(), expected);
  // Equal content gives equal bytes, whatever the order of the Puts; a key put twice keeps the
  // last value.
  ArchiveWriter other("k");
  other.PutInt("i", 8);
  other.PutTensor("t", at::tensor({1.0f, 2.0f}));
  other.PutString("s", "ab");
  other.PutInt("i", 7);
  EXPECT_EQ(other.Finish(), expected);
  // And the reader reads a file written by hand from the layout.
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(expected, "k"));
  EXPECT_EQ(r.GetInt("i").value(), 7);
  EXPECT_EQ(r.GetString("s").value(), "ab");
  EXPECT_THAT(r.KeysWithPrefix(""), ElementsAre("i", "s", "t"));
}

TEST(ArchiveTest, KeysWithPrefixListsExactlyTheMatchingKeysInOrder) {
  ArchiveWriter w("test.kind");
  for (const char* key : {"block1.w", "block0.w", "block0.b", "block", "blocks", "a", "c"}) {
    w.PutInt(key, 1);
  }
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(w.Finish(), "test.kind"));
  EXPECT_THAT(r.KeysWithPrefix("block0."), ElementsAre("block0.b", "block0.w"));
  EXPECT_THAT(r.KeysWithPrefix("block"),
              ElementsAre("block", "block0.b", "block0.w", "block1.w", "blocks"));
  EXPECT_THAT(r.KeysWithPrefix("d"), IsEmpty());
  EXPECT_THAT(r.KeysWithPrefix("blocks."), IsEmpty());
  EXPECT_EQ(r.KeysWithPrefix("").size(), 7u);
  EXPECT_TRUE(r.Has("block"));
  EXPECT_FALSE(r.Has("bloc"));
}

TEST(ArchiveTest, EveryGetterNamesTheKeyThatIsMissingOrOfAnotherType) {
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(SmallArchive(), "test.kind"));
  const auto wrong_type = [](const std::string& key) {
    return StatusIs(absl::StatusCode::kInvalidArgument,
                    AllOf(HasSubstr("'" + key + "'"), HasSubstr("wrong type")));
  };
  EXPECT_THAT(r.GetInt("s"), wrong_type("s"));
  EXPECT_THAT(r.GetDouble("i"), wrong_type("i"));
  EXPECT_THAT(r.GetString("t"), wrong_type("t"));
  EXPECT_THAT(r.GetTensor("d"), wrong_type("d"));
  EXPECT_THAT(r.GetDoubles("s"), wrong_type("s"));
  const auto missing =
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing field 'absent'"));
  EXPECT_THAT(r.GetInt("absent"), missing);
  EXPECT_THAT(r.GetDouble("absent"), missing);
  EXPECT_THAT(r.GetString("absent"), missing);
  EXPECT_THAT(r.GetTensor("absent"), missing);
  EXPECT_THAT(r.GetDoubles("absent"), missing);
}

TEST(ArchiveTest, ForeignFilesOtherKindsAndNewerFormatsAreInvalidArgument) {
  EXPECT_THAT(ArchiveReader::Parse("", "test.kind"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an invnet test.kind")));
  EXPECT_THAT(ArchiveReader::Parse("PK\x03\x04 a zip file, not an archive", "test.kind"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wrong magic")));
  EXPECT_THAT(ArchiveReader::Parse(SmallArchive(), "other.kind"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'test.kind'"), HasSubstr("expected 'other.kind'"))));
  EXPECT_THAT(ArchiveReader::Parse(Sealed(Header("test.kind", 0, /*version=*/2)), "test.kind"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format version 2")));
  EXPECT_THAT(ArchiveReader::Parse(Sealed(Header("test.kind", 0, /*version=*/0)), "test.kind"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format version 0")));
  // An archive with no entries is an archive.
  EXPECT_OK(ArchiveReader::Parse(Sealed(Header("test.kind", 0)), "test.kind").status());
}

TEST(ArchiveTest, EveryTruncationIsAnErrorNotACrash) {
  const std::string bytes = SmallArchive();
  for (size_t size = 0; size < bytes.size(); ++size) {
    absl::StatusOr<ArchiveReader> r = ArchiveReader::Parse(bytes.substr(0, size), "test.kind");
    // Shorter than the magic bytes, a file cannot be told from a foreign one.
    EXPECT_THAT(
        r, StatusIs(size < 8 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kDataLoss))
        << size << " of " << bytes.size() << " bytes";
  }
  // Bytes appended after the checksum are damage too.
  EXPECT_THAT(ArchiveReader::Parse(bytes + '\0', "test.kind"),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ArchiveTest, EveryFlippedBitIsAnError) {
  const std::string bytes = SmallArchive();
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[pos] = static_cast<char>(flipped[pos] ^ (1 << bit));
      EXPECT_THAT(
          ArchiveReader::Parse(flipped, "test.kind"),
          StatusIs(pos < 8 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kDataLoss))
          << "byte " << pos << " bit " << bit;
    }
  }
}

// Files whose checksum is right but whose structure lies, as a hostile or buggy writer would
// make them: each length is checked before use.
TEST(ArchiveTest, InconsistentLengthsUnderAValidChecksumAreDataLoss) {
  const std::string one_int = Entry("i", kInt, U64(1));
  struct Case {
    std::string name;
    std::string body;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"kind longer than the file", "INVNETAR" + U32(1) + U32(200) + "test.kind" + U64(0),
       "bad kind field"},
      {"kind over the limit", Header(std::string(257, 'k'), 0), "bad kind field"},
      {"more entries than present", Header("test.kind", 2) + one_int, "entry 1 is truncated"},
      {"fewer entries than present", Header("test.kind", 0) + one_int, "trailing bytes"},
      {"entry count near 2^64", Header("test.kind", ~uint64_t{0}) + one_int,
       "entry 1 is truncated"},
      {"key over the limit", Header("test.kind", 1) + Entry(std::string(1025, 'k'), kInt, U64(1)),
       "entry 0 is truncated"},
      {"payload length near 2^64",
       Header("test.kind", 1) + U32(1) + "i" + std::string(1, kString) + U64(~uint64_t{0}) + "x",
       "entry 0 is truncated"},
      {"type 0", Header("test.kind", 1) + Entry("i", 0, U64(1)), "bad type"},
      {"type 5", Header("test.kind", 1) + Entry("i", 5, U64(1)), "bad type"},
      {"int of 4 bytes", Header("test.kind", 1) + Entry("i", kInt, U32(1)), "'i' has bad length"},
      {"double of 9 bytes", Header("test.kind", 1) + Entry("d", kDouble, U64(1) + "x"),
       "'d' has bad length"},
      {"duplicate key", Header("test.kind", 2) + one_int + one_int, "duplicate entry 'i'"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ArchiveReader::Parse(Sealed(c.body), "test.kind"),
                StatusIs(absl::StatusCode::kDataLoss,
                         AllOf(HasSubstr("archive is damaged"), HasSubstr(c.message))))
        << c.name;
  }
}

TEST(ArchiveTest, DamagedTensorPayloadsAreRefusedNamingTheKey) {
  struct Case {
    std::string name;
    std::string payload;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty payload", "", "truncated header"},
      {"rank 9", TensorPayload(1, std::vector<uint64_t>(9, 1), FloatBytes({1.0f})), "rank above 8"},
      {"unknown dtype", TensorPayload(4, {1}, FloatBytes({1.0f})), "unknown element type"},
      {"dims cut short", std::string("\x01\x02", 2) + U64(1), "truncated shape"},
      {"too little data", TensorPayload(1, {3}, FloatBytes({1.0f, 2.0f})),
       "data length does not match"},
      {"too much data", TensorPayload(1, {1}, FloatBytes({1.0f, 2.0f})),
       "data length does not match"},
      {"a dimension of 2^41", TensorPayload(1, {uint64_t{1} << 41}, ""), "dimension too large"},
      {"2^32 x 2^32 elements", TensorPayload(1, {uint64_t{1} << 32, uint64_t{1} << 32}, ""),
       "too many elements"},
      {"2^40 elements of 2^20 x 2^20 x 0 x 2", TensorPayload(1, {1u << 20, 1u << 20, 0, 2}, ""),
       "too many elements"},
  };
  for (const Case& c : cases) {
    const std::string bytes = Sealed(Header("test.kind", 1) + Entry("w", kTensor, c.payload));
    ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(bytes, "test.kind"));
    EXPECT_THAT(r.GetTensor("w"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           AllOf(HasSubstr("tensor 'w'"), HasSubstr(c.message))))
        << c.name;
    EXPECT_THAT(r.GetDoubles("w"), StatusIs(absl::StatusCode::kInvalidArgument)) << c.name;
  }
  // The boundaries themselves are accepted: an empty [2^40, 0] tensor and rank 8.
  const std::string edge = Sealed(
      Header("test.kind", 2) +
      Entry("empty", kTensor, TensorPayload(2, {uint64_t{1} << 40, 0}, "")) +
      Entry("rank8", kTensor, TensorPayload(1, std::vector<uint64_t>(8, 1), FloatBytes({4.0f}))));
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(edge, "test.kind"));
  ASSERT_OK_AND_ASSIGN(at::Tensor empty, r.GetTensor("empty"));
  EXPECT_EQ(empty.sizes(), (at::IntArrayRef{int64_t{1} << 40, 0}));
  ASSERT_OK_AND_ASSIGN(at::Tensor rank8, r.GetTensor("rank8"));
  EXPECT_EQ(rank8.dim(), 8);
  EXPECT_EQ(rank8.item<float>(), 4.0f);
}

// Dims whose product wrapped around uint64 (2^32 x 2^32 = 2^64 = 0 elements) matched an empty
// payload, and LibTorch then threw on the allocation: an exception through DatasetStore::Open,
// where no GuardTorch catches it.
TEST(ArchiveTest, ShapesWhoseProductOverflowsAreRefused) {
  // An archive holding an empty [0, 0] tensor, its two dimensions then set to 2^32 and the
  // checksum recomputed, as a hostile file would be.
  ArchiveWriter w("test.kind");
  w.PutTensor("t", at::zeros({0, 0}, at::kFloat));
  std::string bytes = w.Finish();
  // The tensor's payload is the last entry: dtype, rank, two u64 dims, then the CRC.
  const size_t dims_at = bytes.size() - 4 - 16;
  ASSERT_EQ(bytes.substr(dims_at, 16), std::string(16, '\0'));
  for (size_t dim = 0; dim < 2; ++dim) bytes[dims_at + 8 * dim + 4] = 1;  // little-endian 2^32
  const uint32_t crc = Crc32(absl::string_view(bytes).substr(0, bytes.size() - 4));
  for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + i] = static_cast<char>(crc >> (8 * i));
  ASSERT_OK_AND_ASSIGN(ArchiveReader r, ArchiveReader::Parse(bytes, "test.kind"));
  EXPECT_THAT(r.GetTensor("t"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too many elements")));
}

}  // namespace
}  // namespace invnet
