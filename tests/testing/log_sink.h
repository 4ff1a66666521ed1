#ifndef INVNET_TESTS_TESTING_LOG_SINK_H_
#define INVNET_TESTS_TESTING_LOG_SINK_H_

// A glog sink that keeps every line logged while it is added, for tests of what is logged:
//   CapturingSink sink;
//   google::AddLogSink(&sink);
//   ...
//   google::RemoveLogSink(&sink);
//   EXPECT_EQ(sink.Matching("request_id=x").size(), 1u);
// Tests that include it link glog::glog.

#include <glog/logging.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"

namespace invnet::testing {

class CapturingSink : public google::LogSink {
 public:
  using google::LogSink::send;
  void send(google::LogSeverity severity, const char* /*full_filename*/,
            const char* /*base_filename*/, int /*line*/, const google::LogMessageTime& /*time*/,
            const char* message, size_t length) override {
    absl::MutexLock lock(&mu_);
    lines_.push_back({severity, std::string(message, length)});
  }
  // The lines that contain `text`, with their severities.
  std::vector<std::pair<google::LogSeverity, std::string>> Matching(const std::string& text) {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<google::LogSeverity, std::string>> found;
    for (const auto& line : lines_) {
      if (absl::StrContains(line.second, text)) found.push_back(line);
    }
    return found;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<google::LogSeverity, std::string>> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_LOG_SINK_H_
