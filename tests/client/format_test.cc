#include "client/format.h"

#include <limits>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace invnet::client {
namespace {

TEST(TableTest, AlignsColumnsAndTrimsTrailingSpace) {
  Table table({"NAME", "N", "NOTE"});
  table.AddRow({"a", "12345", ""});
  table.AddRow({"longer-name", "1"});  // short rows are padded
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "NAME         N      NOTE\n"
            "a            12345\n"
            "longer-name  1\n");
  EXPECT_EQ(table.num_rows(), 2u);
}

TEST(FormatTest, Durations) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(59.4), "59s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(2 * 86400 + 3 * 3600), "2d03h");
  EXPECT_EQ(FormatDuration(-1), "-");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::quiet_NaN()), "-");
}

TEST(FormatTest, BytesNumbersAndTimes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(12 * 1024 * 1024), "12.0 MiB");
  EXPECT_EQ(FormatNumber(0.0123456), "0.01235");
  EXPECT_EQ(FormatNumber(1.5e-6), "1.5e-06");
  EXPECT_EQ(FormatNumber(std::numeric_limits<double>::quiet_NaN()), "nan");
  google::protobuf::Timestamp t;
  EXPECT_EQ(FormatTimestamp(t), "-");
  t.set_seconds(1700000000);
  EXPECT_EQ(FormatTimestamp(t), "2023-11-14 22:13:20");
}

TEST(FormatTest, EnumNames) {
  EXPECT_EQ(JobStateName(v1::JOB_STATE_RUNNING), "running");
  EXPECT_EQ(LossName(v1::LOSS_LOG_DET), "log-det");
  EXPECT_EQ(TargetSpaceName(v1::TARGET_SPACE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(ActivationName(v1::ACTIVATION_LIPSWISH), "lipswish");
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(42)), "unknown");
}

TEST(FormatTest, ProblemSummaries) {
  v1::Operator op;
  EXPECT_EQ(OperatorSummary(op), "-");
  op.mutable_identity()->set_dim(2);
  EXPECT_EQ(OperatorSummary(op), "identity(n=2)");
  op.mutable_dense()->mutable_matrix()->add_shape(3);
  op.mutable_dense()->mutable_matrix()->add_shape(2);
  EXPECT_EQ(OperatorSummary(op), "dense(3x2)");
  v1::ConvolutionOperator* conv = op.mutable_convolution();
  conv->set_dim(64);
  conv->add_kernel(0.25);
  conv->add_kernel(0.5);
  conv->add_kernel(0.25);
  conv->set_boundary(v1::BOUNDARY_ZERO);
  EXPECT_EQ(OperatorSummary(op), "convolution(n=64, 3 taps, zero)");

  v1::Problem problem;
  problem.set_dataset("digits");
  EXPECT_EQ(SignalsSummary(problem), "dataset 'digits'");
  problem.mutable_prior()->add_weights(0.5);
  problem.mutable_prior()->add_weights(0.5);
  EXPECT_EQ(SignalsSummary(problem), "gaussian mixture (2 components)");
}

}  // namespace
}  // namespace invnet::client
