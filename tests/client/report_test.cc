#include "client/report.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace invnet::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ResultRow Reference(const std::string& label, double mse, double ratio) {
  ResultRow row;
  row.label = label;
  row.key = "posterior_mean";
  row.score.set_estimator("posterior_mean");
  row.score.set_mse(mse);
  row.score.set_mse_ratio_to_pm(ratio);
  row.score.set_rms_to_pm(0);
  row.score.set_rms_to_map(0.0251);
  return row;
}

ResultRow Network(double mse) {
  ResultRow row;
  row.label = "log-det regularised";
  row.key = "log-det";
  row.network = true;
  row.score.set_model("exp-log-det");
  row.score.set_version(3);
  row.target_space = "measurement";
  row.score.set_mse(mse);
  row.score.set_forward_error(0.00026);
  row.score.set_converged_fraction(0.975);
  row.score.set_mean_iterations(21.04);
  row.train_seconds = 38.24;
  return row;
}

TEST(ResultsMarkdownTableTest, AlignedColumnsAndFormattedNumbers) {
  const std::string table =
      ResultsMarkdownTable({Reference("exact posterior mean", 0.08791, 1), Network(0.10057)});
  EXPECT_EQ(table,
            "| estimator            |    MSE |  x PM | RMS to PM | RMS to MAP | forward error | "
            "converged | iterations | train time |\n"
            "|----------------------|-------:|------:|----------:|-----------:|--------------:|"
            "----------:|-----------:|-----------:|\n"
            "| exact posterior mean | 0.0879 | 1.000 |         0 |      0.025 |               | "
            "          |            |            |\n"
            "| log-det regularised  | 0.1006 |       |           |            |     2.600e-04 | "
            "    97.5% |       21.0 |     38.2 s |\n");
}

TEST(ResultsMarkdownTableTest, DropsColumnsWithoutValuesAndCountsCodePoints) {
  ResultRow row = Network(2.5e13);
  row.label = "A⁺y";
  const std::string table = ResultsMarkdownTable({row});
  EXPECT_THAT(table, Not(HasSubstr("x PM")));
  EXPECT_THAT(table, Not(HasSubstr("RMS to PM")));
  EXPECT_THAT(table, HasSubstr("| 2.500e+13 |"));
  // "A⁺y" is 3 characters wide (5 bytes): padded to the header's 9.
  EXPECT_THAT(table, HasSubstr("| A⁺y       |"));
}

TEST(ResultsCsvTest, FullPrecisionEmptyCellsAndQuoting) {
  ResultRow reference = Reference("Wiener, \"LMMSE\"", 0.1234567891234, 1.25);
  reference.key = "wiener";
  EXPECT_EQ(ResultsCsv({reference, Network(0.1)}),
            "estimator,key,kind,model,version,target_space,mse,mse_ratio_to_pm,rms_to_pm,"
            "rms_to_map,forward_error,converged_fraction,mean_iterations,train_seconds,"
            "training_seed,posterior_std_method,mean_posterior_std,std_ratio_mean,"
            "std_ratio_median,std_ratio_q10,std_ratio_q90,std_undefined_fraction\n"
            "\"Wiener, \"\"LMMSE\"\"\",wiener,reference,,,,0.123456789,1.25,0,0.0251,,,,,,,,,,,"
            ",\n"
            "log-det regularised,log-det,network,exp-log-det,3,measurement,0.1,,,,0.00026,0.975,"
            "21.04,38.24,0,,,,,,,\n");
}

TEST(NotApplicableScoreTest, EveryMetricIsNaN) {
  const v1::EstimatorScore score = NotApplicableScore();
  const google::protobuf::Descriptor* descriptor = score.GetDescriptor();
  int doubles = 0;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE) continue;
    ++doubles;
    EXPECT_TRUE(std::isnan(score.GetReflection()->GetDouble(score, field))) << field->name();
  }
  EXPECT_GE(doubles, 13);
}

TEST(MeanWithErrorTest, MeanStandardErrorAndSkippedNaN) {
  MeanAndError m = MeanWithError({1.0, 2.0, 3.0, kNotApplicable});
  EXPECT_EQ(m.count, 3);
  EXPECT_DOUBLE_EQ(m.mean, 2.0);
  EXPECT_DOUBLE_EQ(m.standard_error, 1.0 / std::sqrt(3.0));  // sd 1, three values
  MeanAndError one = MeanWithError({0.5});
  EXPECT_DOUBLE_EQ(one.mean, 0.5);
  EXPECT_TRUE(std::isnan(one.standard_error));
  EXPECT_EQ(MeanWithError({}).count, 0);
}

ResultRow SeedRun(const std::string& key, uint64_t seed, double mse) {
  ResultRow row = Network(mse);
  row.key = key;
  row.label = key + " regularised, seed " + std::to_string(seed);
  row.training_seed = seed;
  row.score.set_mse_ratio_to_pm(mse / 0.1);
  return row;
}

// Per loss over its seeds; a difference from the best below twice its error is called so.
TEST(SummarizeOverSeedsTest, GroupsByLossAndSaysWhichDifferencesAreWithinError) {
  const std::vector<ResultRow> rows = {
      Reference("exact posterior mean", 0.1, 1),
      SeedRun("log-det", 0, 0.110), SeedRun("log-det", 1, 0.112), SeedRun("log-det", 2, 0.114),
      SeedRun("divergence", 0, 0.101), SeedRun("divergence", 1, 0.102), SeedRun("divergence", 2, 0.103),
      SeedRun("approximation", 0, 0.101), SeedRun("approximation", 1, 0.105),
      SeedRun("approximation", 2, 0.109)};
  const std::vector<SeedSummaryRow> summary = SummarizeOverSeeds(rows);
  ASSERT_EQ(summary.size(), 3u);
  EXPECT_EQ(summary[0].key, "log-det");
  EXPECT_EQ(summary[0].label, "log-det regularised");
  EXPECT_EQ(summary[0].mse.count, 3);
  EXPECT_NEAR(summary[0].mse.mean, 0.112, 1e-12);
  EXPECT_NEAR(summary[0].mse.standard_error, 0.002 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(summary[0].mse_ratio_to_pm.mean, 1.12, 1e-12);
  EXPECT_EQ(summary[1].versus_best, "best");
  // log-det: +0.010 against an error of about 0.0013: told apart.
  EXPECT_THAT(summary[0].versus_best, Not(HasSubstr("within error")));
  EXPECT_THAT(summary[0].versus_best, HasSubstr("+0.0100 ± "));
  // approximation: +0.003 against an error of about 0.0024: within error of the best.
  EXPECT_EQ(summary[2].versus_best, "within error of the best (+0.0030 ± 0.0024)");
  const std::string table = SeedSummaryMarkdownTable(summary);
  EXPECT_THAT(table, HasSubstr("| estimator "));
  EXPECT_THAT(table, HasSubstr("| divergence regularised    |    3 | 0.1020 ± 0.0006 | "
                               "1.020 ± 0.006 |"));
}

TEST(MakeGridTest, LinesRunAlongEachCoordinate) {
  const Grid grid = MakeGrid(0, 1, 10, 12, 3, 2);
  ASSERT_EQ(grid.points.rows(), 12);
  // Line 0: second coordinate 10, first from 0 to 1; line 3 (first of the second family):
  // first coordinate 0, second from 10 to 12.
  EXPECT_EQ(grid.points.at(0, 0), 0);
  EXPECT_EQ(grid.points.at(1, 0), 1);
  EXPECT_EQ(grid.points.at(1, 1), 10);
  EXPECT_EQ(grid.points.at(5, 1), 12);  // line 2, point 1
  EXPECT_EQ(grid.points.at(6, 0), 0);
  EXPECT_EQ(grid.points.at(6, 1), 10);
  EXPECT_EQ(grid.points.at(7, 1), 12);
  EXPECT_EQ(grid.points.at(11, 0), 1);
}

}  // namespace
}  // namespace invnet::client
