#include "client/report.h"

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
  row.mse = mse;
  row.mse_ratio_to_pm = ratio;
  row.rms_to_pm = 0;
  row.rms_to_map = 0.0251;
  return row;
}

ResultRow Network(double mse) {
  ResultRow row;
  row.label = "log-det regularised";
  row.key = "log-det";
  row.network = true;
  row.model = "exp-log-det";
  row.version = 3;
  row.target_space = "measurement";
  row.mse = mse;
  row.forward_error = 0.00026;
  row.converged_fraction = 0.975;
  row.mean_iterations = 21.04;
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
            "posterior_std_method,mean_posterior_std,std_ratio_mean,std_ratio_median,"
            "std_ratio_q10,std_ratio_q90,std_undefined_fraction\n"
            "\"Wiener, \"\"LMMSE\"\"\",wiener,reference,,,,0.123456789,1.25,0,0.0251,,,,,,,,,,"
            ",\n"
            "log-det regularised,log-det,network,exp-log-det,3,measurement,0.1,,,,0.00026,0.975,"
            "21.04,38.24,,,,,,,\n");
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
