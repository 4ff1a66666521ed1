#include "server/dataset_store.h"

#include <ATen/ATen.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/archive.h"
#include "proto/base/file_io.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

namespace fs = std::filesystem;
using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::SizeIs;

class DatasetStoreTest : public ::testing::Test {
 protected:
  // Reserve + Save, as an upload does.
  absl::StatusOr<DatasetInfo> Upload(DatasetStore& store, const std::string& name,
                                     const at::Tensor& samples) {
    if (absl::Status reserved = store.Reserve(name); !reserved.ok()) return reserved;
    return store.Save(name, samples);
  }

  // The names of the files in <root>/datasets.
  std::vector<std::string> Files() const {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      files.push_back(entry.path().filename().string());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  invnet::testing::ScratchDirectory scratch_{"dataset_store_test"};
  const std::string root_ = scratch_.path();
  const std::string dir_ = root_ + "/datasets";
};

TEST_F(DatasetStoreTest, SavedSamplesLoadBackAsFloat32AndSurviveAReopen) {
  const at::Tensor samples = at::randn({37, 3}, at::kDouble);
  const absl::Time before = absl::Now();
  DatasetInfo saved;
  {
    ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
    ASSERT_OK_AND_ASSIGN(saved, Upload(*store, "gauss-3d", samples));
    EXPECT_EQ(saved.name, "gauss-3d");
    EXPECT_EQ(saved.num_samples, 37);
    EXPECT_EQ(saved.dim, 3);
    EXPECT_EQ(saved.size_bytes, static_cast<int64_t>(fs::file_size(dir_ + "/gauss-3d.dataset")));
    EXPECT_GE(saved.created, before);
    EXPECT_LE(saved.created, absl::Now());
    EXPECT_EQ(saved.fingerprint, DatasetFingerprint(samples));
    ASSERT_OK_AND_ASSIGN(at::Tensor loaded, store->Load("gauss-3d"));
    EXPECT_EQ(loaded.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(loaded, samples.to(at::kFloat)));
    // Nothing but the dataset itself: no temporary file stays behind.
    EXPECT_THAT(Files(), ElementsAre("gauss-3d.dataset"));
  }
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  EXPECT_THAT(store->load_problems(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(at::Tensor loaded, store->Load("gauss-3d"));
  EXPECT_TRUE(at::equal(loaded, samples.to(at::kFloat)));
  ASSERT_OK_AND_ASSIGN(DatasetInfo info, store->Info("gauss-3d"));
  EXPECT_EQ(info.name, saved.name);
  EXPECT_EQ(info.num_samples, saved.num_samples);
  EXPECT_EQ(info.dim, saved.dim);
  EXPECT_EQ(info.size_bytes, saved.size_bytes);
  EXPECT_EQ(info.fingerprint, saved.fingerprint);
  // The file keeps the creation time to the millisecond.
  EXPECT_EQ(absl::ToUnixMillis(info.created), absl::ToUnixMillis(saved.created));
}

TEST_F(DatasetStoreTest, ListHoldsEveryDatasetByName) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  EXPECT_THAT(store->List(), IsEmpty());
  ASSERT_OK(Upload(*store, "zeta", at::randn({4, 2})).status());
  ASSERT_OK(Upload(*store, "alpha", at::randn({5, 6})).status());
  ASSERT_OK(Upload(*store, "mid_1", at::randn({1, 1})).status());
  // A reservation is not a dataset yet.
  ASSERT_OK(store->Reserve("pending"));
  std::vector<DatasetInfo> all = store->List();
  ASSERT_THAT(all, SizeIs(3));
  EXPECT_EQ(all[0].name, "alpha");
  EXPECT_EQ(all[0].num_samples, 5);
  EXPECT_EQ(all[0].dim, 6);
  EXPECT_EQ(all[1].name, "mid_1");
  EXPECT_EQ(all[2].name, "zeta");
  EXPECT_THAT(store->Info("pending"), StatusIs(absl::StatusCode::kNotFound));
  store->Release("pending");
}

TEST_F(DatasetStoreTest, ANameIsReservedOnceUntilSavedOrReleased) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  ASSERT_OK(store->Reserve("d"));
  EXPECT_THAT(store->Reserve("d"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'d' already exists")));
  store->Release("d");
  ASSERT_OK(store->Reserve("d"));  // free again
  ASSERT_OK(store->Save("d", at::randn({3, 2})).status());
  // Saved: taken now, by the dataset.
  EXPECT_THAT(store->Reserve("d"), StatusIs(absl::StatusCode::kAlreadyExists));
  // Reservations of other names are independent.
  EXPECT_OK(store->Reserve("e"));
  store->Release("e");
}

TEST_F(DatasetStoreTest, ConcurrentReservationsOfOneNameLetExactlyOneThrough) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  std::atomic<int> granted{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      absl::Status status = store->Reserve("contested");
      if (status.ok()) ++granted;
      if (status.code() == absl::StatusCode::kAlreadyExists) ++refused;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(granted.load(), 1);
  EXPECT_EQ(refused.load(), 7);
}

TEST_F(DatasetStoreTest, BadNamesAreInvalidArgumentNamingTheFieldAndNeverBecomePaths) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  for (const std::string& name : std::vector<std::string>{
           "", "Upper", "../escape", "a/b", "dot.name", "-lead", std::string(64, 'a')}) {
    EXPECT_THAT(store->Reserve(name),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset.name")))
        << name;
    EXPECT_THAT(store->Info(name),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset")))
        << name;
    EXPECT_THAT(store->Load(name), StatusIs(absl::StatusCode::kInvalidArgument)) << name;
    EXPECT_THAT(store->Delete(name), StatusIs(absl::StatusCode::kInvalidArgument)) << name;
  }
  EXPECT_OK(store->Reserve(std::string(63, 'a')));  // the longest valid name
  store->Release(std::string(63, 'a'));
  EXPECT_THAT(Files(), IsEmpty());
  EXPECT_FALSE(fs::exists(root_ + "/escape.dataset"));
}

TEST_F(DatasetStoreTest, UnknownDatasetsAreNotFoundNamingThem) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  EXPECT_THAT(store->Info("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("dataset 'nope'")));
  EXPECT_THAT(store->Load("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("dataset 'nope'")));
  EXPECT_THAT(store->Delete("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("dataset 'nope'")));
}

TEST_F(DatasetStoreTest, BadSamplesAreRefusedNothingIsWrittenAndTheNameIsFreed) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  at::Tensor with_nan = at::randn({6, 2});
  with_nan[4][1] = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    at::Tensor samples;
    std::string message;
  };
  for (const Case& c : {Case{with_nan, "sample 4 holds NaN"}, Case{at::randn({6}), "[N, n]"},
                        Case{at::randn({2, 3, 4}), "[N, n]"}, Case{at::empty({0, 3}), "empty"},
                        Case{at::Tensor(), "[N, n]"}}) {
    ASSERT_OK(store->Reserve("bad"));
    EXPECT_THAT(store->Save("bad", c.samples),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("dataset samples"), HasSubstr(c.message))))
        << c.message;
    EXPECT_THAT(store->Info("bad"), StatusIs(absl::StatusCode::kNotFound));
  }
  EXPECT_THAT(store->List(), IsEmpty());
  EXPECT_THAT(Files(), IsEmpty());
  EXPECT_OK(store->Reserve("bad"));  // the failed Save released it
  store->Release("bad");
}

TEST_F(DatasetStoreTest, AFailedWriteLeavesNoFileAndNoDataset) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  // A directory where the file would go: the final rename fails after the temporary file was
  // written in full.
  fs::create_directories(dir_ + "/blocked.dataset/inside");
  ASSERT_OK(store->Reserve("blocked"));
  absl::StatusOr<DatasetInfo> saved = store->Save("blocked", at::randn({8, 2}));
  EXPECT_THAT(saved, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("blocked.dataset")));
  EXPECT_THAT(store->Info("blocked"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store->List(), IsEmpty());
  // No temporary file is left, the obstacle is untouched, and the name is free again.
  EXPECT_THAT(Files(), ElementsAre("blocked.dataset"));
  EXPECT_TRUE(fs::is_directory(dir_ + "/blocked.dataset/inside"));
  EXPECT_OK(store->Reserve("blocked"));
  store->Release("blocked");
}

TEST_F(DatasetStoreTest, DeleteRemovesTheFileAndFreesTheName) {
  {
    ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
    ASSERT_OK(Upload(*store, "keep", at::randn({3, 2})).status());
    ASSERT_OK(Upload(*store, "drop", at::randn({3, 2})).status());
    ASSERT_OK(store->Delete("drop"));
    EXPECT_THAT(store->Info("drop"), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(store->Load("drop"), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(store->Delete("drop"), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(Files(), ElementsAre("keep.dataset"));
    ASSERT_THAT(store->List(), SizeIs(1));
    // The name can be uploaded again, with other samples.
    const at::Tensor again = at::randn({9, 4});
    ASSERT_OK_AND_ASSIGN(DatasetInfo info, Upload(*store, "drop", again));
    EXPECT_EQ(info.dim, 4);
    ASSERT_OK(store->Delete("drop"));
  }
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  EXPECT_THAT(store->Info("drop"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(store->Info("keep").status());
}

// Files for Open to index: `good` valid, the rest damaged, foreign or interrupted.
void WriteMixedDirectory(const std::string& dir, const at::Tensor& good) {
  fs::create_directories(dir);
  ArchiveWriter writer("invnet.dataset");
  writer.PutTensor("samples", good.to(at::kFloat));
  writer.PutInt("created_unix_ms", 1234);
  const std::string bytes = writer.Finish();
  ASSERT_OK(WriteFileAtomically(dir + "/good.dataset", bytes));
  // A bit flipped in the middle, and a file cut short.
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  ASSERT_OK(WriteFileAtomically(dir + "/flipped.dataset", flipped));
  ASSERT_OK(WriteFileAtomically(dir + "/truncated.dataset", bytes.substr(0, bytes.size() - 9)));
  // An archive of another kind, and float64 samples where float32 belong.
  ArchiveWriter checkpoint("invnet.checkpoint");
  checkpoint.PutTensor("samples", good.to(at::kFloat));
  checkpoint.PutInt("created_unix_ms", 1);
  ASSERT_OK(WriteFileAtomically(dir + "/foreign.dataset", checkpoint.Finish()));
  ArchiveWriter doubles("invnet.dataset");
  doubles.PutTensor("samples", good.to(at::kDouble));
  doubles.PutInt("created_unix_ms", 1);
  ASSERT_OK(WriteFileAtomically(dir + "/doubles.dataset", doubles.Finish()));
  // A name no upload could have (never indexed), a temporary file and an unrelated file.
  ASSERT_OK(WriteFileAtomically(dir + "/Bad.Name.dataset", bytes));
  std::ofstream(dir + "/late.dataset.tmp-99-0") << "interrupted write";
  std::ofstream(dir + "/README") << "not a dataset";
}

TEST_F(DatasetStoreTest, OpenIndexesGoodFilesReportsDamagedOnesAndRemovesTemporaries) {
  const at::Tensor good = at::randn({5, 2});
  WriteMixedDirectory(dir_, good);
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  ASSERT_THAT(store->List(), SizeIs(1));
  ASSERT_OK_AND_ASSIGN(DatasetInfo info, store->Info("good"));
  EXPECT_EQ(info.created, absl::FromUnixMillis(1234));
  EXPECT_EQ(info.fingerprint, DatasetFingerprint(good));
  ASSERT_OK_AND_ASSIGN(at::Tensor loaded, store->Load("good"));
  EXPECT_TRUE(at::equal(loaded, good));
  // Every damaged dataset file is described, by file; the rest is silently not a dataset.
  std::vector<std::string> problems = store->load_problems();
  std::sort(problems.begin(), problems.end());
  ASSERT_THAT(problems, SizeIs(4));
  EXPECT_THAT(problems[0], HasSubstr("datasets/doubles.dataset: DATA_LOSS"));
  EXPECT_THAT(problems[1], HasSubstr("datasets/flipped.dataset: DATA_LOSS"));
  EXPECT_THAT(problems[2], HasSubstr("datasets/foreign.dataset: INVALID_ARGUMENT"));
  EXPECT_THAT(problems[3], HasSubstr("datasets/truncated.dataset: DATA_LOSS"));
  for (const char* name : {"flipped", "truncated", "foreign", "doubles"}) {
    EXPECT_THAT(store->Load(name), StatusIs(absl::StatusCode::kNotFound)) << name;
  }
  EXPECT_THAT(store->leftovers(), IsEmpty());
  EXPECT_FALSE(fs::exists(dir_ + "/late.dataset.tmp-99-0"));
  EXPECT_TRUE(fs::exists(dir_ + "/README"));
}

TEST_F(DatasetStoreTest, ReadOnlyOpenChangesNothingAndListsTemporaries) {
  // No datasets directory at all: read-only does not create it.
  {
    ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_, /*read_only=*/true));
    EXPECT_THAT(store->List(), IsEmpty());
    EXPECT_FALSE(fs::exists(dir_));
  }
  WriteMixedDirectory(dir_, at::randn({5, 2}));
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_, /*read_only=*/true));
  EXPECT_THAT(store->leftovers(), ElementsAre("datasets/late.dataset.tmp-99-0"));
  EXPECT_TRUE(fs::exists(dir_ + "/late.dataset.tmp-99-0"));
  EXPECT_THAT(store->load_problems(), SizeIs(4));
  EXPECT_THAT(store->List(), SizeIs(1));
}

TEST_F(DatasetStoreTest, ALoadOfAFileDamagedAfterOpenIsDataLoss) {
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  ASSERT_OK(Upload(*store, "d", at::randn({20, 3})).status());
  const std::string path = dir_ + "/d.dataset";
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(path));
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x01;
  ASSERT_OK(WriteFileAtomically(path, flipped));
  EXPECT_THAT(store->Load("d"), StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_OK(WriteFileAtomically(path, bytes.substr(0, 40)));
  EXPECT_THAT(store->Load("d"), StatusIs(absl::StatusCode::kDataLoss));
  // The index still knows it, so it can be deleted and uploaded again.
  EXPECT_OK(store->Info("d").status());
  ASSERT_OK(store->Delete("d"));
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(DatasetStoreTest, ALoadOfADamagedFileSaysWhichDataset) {
  // The archive's own message ("archive is damaged: checksum mismatch") names no file; Load,
  // and so a training job on the dataset, must say which dataset it was.
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  ASSERT_OK(Upload(*store, "d", at::randn({20, 3})).status());
  const std::string path = dir_ + "/d.dataset";
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(path));
  bytes[bytes.size() / 2] ^= 0x01;
  ASSERT_OK(WriteFileAtomically(path, bytes));
  EXPECT_THAT(store->Load("d"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("dataset 'd': archive is damaged")));
}

TEST(DatasetFingerprintTest, NamesTheShapeAndTheCrcOfTheFloat32Values) {
  const at::Tensor samples = at::tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}).view({3, 2});
  const std::string fingerprint = DatasetFingerprint(samples);
  EXPECT_THAT(fingerprint, MatchesRegex("3x2-crc32-[0-9a-f]{8}"));
  const std::string crc = absl::StrFormat(
      "%08x",
      Crc32(absl::string_view(static_cast<const char*>(samples.data_ptr()), 6 * sizeof(float))));
  EXPECT_EQ(fingerprint, "3x2-crc32-" + crc);
  // The same values in float64, or as a non-contiguous view, identify the same dataset.
  EXPECT_EQ(DatasetFingerprint(samples.to(at::kDouble)), fingerprint);
  EXPECT_EQ(DatasetFingerprint(samples.t().contiguous().t()), fingerprint);
  // One value changed, or the same values in another shape: another dataset.
  at::Tensor changed = samples.clone();
  changed[2][1] = 6.5f;
  EXPECT_NE(DatasetFingerprint(changed), fingerprint);
  EXPECT_THAT(DatasetFingerprint(samples.view({2, 3})), HasSubstr("2x3-crc32-" + crc));
}

TEST(CheckDatasetUnchangedTest, FailedPreconditionNamingTheDatasetWhenItChanged) {
  const at::Tensor samples = at::randn({10, 3});
  DatasetRef ref{"ds", 10, 3, DatasetFingerprint(samples)};
  EXPECT_OK(CheckDatasetUnchanged(ref, samples));
  EXPECT_OK(CheckDatasetUnchanged(ref, samples.to(at::kDouble)));
  // Same shape, other values.
  at::Tensor other = samples.clone();
  other[0][0] += 1.0f;
  EXPECT_THAT(CheckDatasetUnchanged(ref, other),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("dataset 'ds'"), HasSubstr("other values"),
                             HasSubstr("since this model was trained on it"))));
  // Another size or dimension; `since` ends the message's "changed since".
  EXPECT_THAT(CheckDatasetUnchanged(ref, at::randn({11, 3}), "the job was queued"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("since the job was queued"), HasSubstr("10 x 3"),
                             HasSubstr("11 x 3"))));
  EXPECT_THAT(CheckDatasetUnchanged(ref, at::randn({10, 2})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("now 10 x 2")));
  // A reference from an older checkpoint has no fingerprint: only the shape is compared.
  DatasetRef old{"ds", 10, 3, ""};
  EXPECT_OK(CheckDatasetUnchanged(old, other));
  EXPECT_THAT(CheckDatasetUnchanged(old, at::randn({10, 4})),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace invnet::server
