#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace invnet::testing {
namespace {

std::vector<char*> ArgvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> pointers;
  for (const std::string& a : argv) pointers.push_back(const_cast<char*>(a.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

// Waits for `pid` up to `timeout`; returns the exit code, or -1 (signal, or still running).
int WaitFor(pid_t pid, absl::Duration timeout, bool* exited) {
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  *exited = false;
  while (true) {
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      *exited = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    if (done < 0 || absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(5));  // polling a child's exit, not waiting for a server
  }
}

}  // namespace

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout, const std::string& input) {
  int out_pipe[2], err_pipe[2], in_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0 || ::pipe(in_pipe) != 0) {
    return absl::InternalError("pipe failed");
  }
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], in_pipe[0], in_pipe[1]}) {
      ::close(fd);
    }
    std::vector<char*> args = ArgvPointers(argv);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(in_pipe[0]);
  if (!input.empty()) {
    ssize_t ignored = ::write(in_pipe[1], input.data(), input.size());
    (void)ignored;
  }
  ::close(in_pipe[1]);
  CommandResult result;
  const absl::Time deadline = absl::Now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buffer[65536];
  while (open_fds > 0 && absl::Now() < deadline) {
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<size_t>(n));
      }
    }
  }
  for (const pollfd& fd : fds) {
    if (fd.fd >= 0) ::close(fd.fd);
  }
  bool exited = false;
  result.exit_code = WaitFor(pid, std::max(deadline - absl::Now(), absl::Seconds(1)), &exited);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    result.exit_code = -1;
    result.err += "\n[killed: timed out]";
  }
  return result;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::vector<std::string>& args,
    const std::string& log_path, absl::Duration timeout) {
  int out_pipe[2];
  if (::pipe(out_pipe) != 0) return absl::InternalError("pipe failed");
  std::vector<std::string> argv = {binary, "--address=127.0.0.1:0"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(out_pipe[1], 1);
    if (log >= 0) ::dup2(log, 2);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    std::vector<char*> pointers = ArgvPointers(argv);
    ::execv(pointers[0], pointers.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  std::unique_ptr<ServerProcess> server(new ServerProcess());
  server->pid_ = pid;
  const absl::Time deadline = absl::Now() + timeout;
  std::string seen;
  const std::string marker = "listening on ";
  while (absl::Now() < deadline) {
    pollfd fd = {out_pipe[0], POLLIN, 0};
    if (::poll(&fd, 1, 100) <= 0) continue;
    char buffer[4096];
    ssize_t n = ::read(out_pipe[0], buffer, sizeof(buffer));
    if (n <= 0) break;  // exited before listening
    seen.append(buffer, static_cast<size_t>(n));
    size_t at = seen.find(marker);
    size_t end = at == std::string::npos ? at : seen.find('\n', at);
    if (end != std::string::npos) {
      std::string address = seen.substr(at + marker.size(), end - at - marker.size());
      if (absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &server->port_)) {
        // Keep the pipe's read end open (the server may print more); closing it is harmless
        // too because the server writes only the one line.
        ::close(out_pipe[0]);
        server->announcement_ = seen;
        return server;
      }
    }
  }
  ::close(out_pipe[0]);
  return absl::UnavailableError(
      absl::StrCat("invnet-server did not announce its port; stdout: ", seen, "; see ",
                   log_path));
}

int ServerProcess::Wait(absl::Duration timeout) {
  bool exited = false;
  int code = WaitFor(pid_, timeout, &exited);
  if (exited) pid_ = -1;
  return code;
}

int ServerProcess::Terminate(absl::Duration timeout) {
  if (pid_ < 0) return -1;
  ::kill(pid_, SIGTERM);
  int code = Wait(timeout);
  if (pid_ >= 0) Kill();
  return code;
}

void ServerProcess::Kill() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

ServerProcess::~ServerProcess() { Kill(); }

}  // namespace invnet::testing
