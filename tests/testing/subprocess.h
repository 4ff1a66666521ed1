#ifndef INVNET_TESTS_TESTING_SUBPROCESS_H_
#define INVNET_TESTS_TESTING_SUBPROCESS_H_

// Real processes for end-to-end tests: run a command to completion, or start invnet-server and
// wait until it announces its port.

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace invnet::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;
  std::string err;
};

// Runs argv[0] with arguments, stdin from /dev/null (or `input`), and collects its output.
// Kills it after `timeout`. INTERNAL when it cannot be started.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout = absl::Minutes(5),
                                         const std::string& input = "");

// invnet-server as a child process.
class ServerProcess {
 public:
  // Starts `binary` with `args` plus --address=127.0.0.1:0 and waits (up to `timeout`) for the
  // "listening on HOST:PORT" line. stderr goes to `log_path`.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& log_path, absl::Duration timeout = absl::Seconds(60));
  ~ServerProcess();  // SIGKILL if still running

  int port() const { return port_; }
  pid_t pid() const { return pid_; }  // -1 once it has ended
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  // What the server printed on stdout up to its "listening on" line.
  const std::string& announcement() const { return announcement_; }
  // Sends SIGTERM and waits; returns the exit code (-1 for a signal or a timeout).
  int Terminate(absl::Duration timeout = absl::Seconds(30));
  // SIGKILL, as a crash.
  void Kill();

 private:
  ServerProcess() = default;
  int Wait(absl::Duration timeout);
  pid_t pid_ = -1;
  int port_ = 0;
  std::string announcement_;
};

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_SUBPROCESS_H_
