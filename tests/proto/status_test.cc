#include "proto/base/status.h"

#include "absl/strings/cord.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/base/request_id.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

TEST(Annotate, PrefixesTheMessageAndKeepsTheCodeAndEveryPayload) {
  absl::Status status = absl::UnavailableError("connection refused");
  status.SetPayload(kRequestIdPayload, absl::Cord("0123456789abcdef"));
  status.SetPayload("example/other", absl::Cord("kept too"));
  const absl::Status annotated =
      Annotate(Annotate(status, "reconstruct with model m version 1"), "experiment");
  EXPECT_EQ(annotated.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(annotated.message(),
            "experiment: reconstruct with model m version 1: connection refused");
  EXPECT_EQ(annotated.GetPayload(kRequestIdPayload), absl::Cord("0123456789abcdef"));
  EXPECT_EQ(annotated.GetPayload("example/other"), absl::Cord("kept too"));
}

TEST(Annotate, OkStaysOk) { EXPECT_TRUE(Annotate(absl::OkStatus(), "context").ok()); }

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  INVNET_ASSIGN_OR_RETURN(const int half, Half(x));
  INVNET_ASSIGN_OR_RETURN(const int quarter, Half(half));
  return quarter;
}

absl::Status CheckQuarter(int x) {
  INVNET_RETURN_IF_ERROR(Quarter(x).status());
  return absl::OkStatus();
}

TEST(StatusMacros, ReturnTheFirstErrorAndAssignOtherwise) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status(), absl::InvalidArgumentError("odd"));
  EXPECT_TRUE(CheckQuarter(4).ok());
  EXPECT_EQ(CheckQuarter(3), absl::InvalidArgumentError("odd"));
}

}  // namespace
}  // namespace invnet
