#include "proto/base/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"

namespace invnet {
namespace {

// Closes `fd` on every path out of a scope.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
    return *this;
  }
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, returning close()'s errno (0 on success): a failed close can mean lost data.
  int Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat(path, ": cannot write"));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ErrnoToStatus(int error_number, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(error_number));
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EISDIR:
    case ENOTEMPTY:
      return absl::FailedPreconditionError(message);  // a directory where a file should be
    case ENAMETOOLONG:
    case ELOOP:
      return absl::InvalidArgumentError(message);  // a path that cannot name a file
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status SyncDirectory(const std::string& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoToStatus(errno, absl::StrCat(dir, ": cannot open directory"));
  if (::fsync(fd.get()) != 0 && errno != EINVAL) {
    return ErrnoToStatus(errno, absl::StrCat(dir, ": cannot fsync directory"));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (path.empty() || slash == path.size() - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is a directory name, not a file name"));
  }
  // pid + a per-process random number + a counter: a leftover of a killed writer (a CLI that
  // was PID 1 in its container, say) never blocks the next one, and O_EXCL settles the rest.
  static const uint64_t nonce = std::random_device{}();
  static std::atomic<uint64_t> counter{0};
  std::string temporary;
  FileDescriptor fd(-1);
  for (int attempt = 0; attempt < 8 && fd.get() < 0; ++attempt) {
    temporary = absl::StrCat(path, kTemporaryFileMarker, ::getpid(), "-", absl::Hex(nonce), "-",
                             counter.fetch_add(1));
    fd = FileDescriptor(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0 && errno != EEXIST) break;
  }
  if (fd.get() < 0) {
    return ErrnoToStatus(errno, absl::StrCat(path, ": cannot create a temporary file"));
  }
  absl::Status status = WriteAll(fd.get(), contents, path);
  if (status.ok() && ::fsync(fd.get()) != 0) {
    status = ErrnoToStatus(errno, absl::StrCat(path, ": cannot fsync"));
  }
  if (const int close_errno = fd.Close(); close_errno != 0 && status.ok()) {
    status = ErrnoToStatus(close_errno, absl::StrCat(path, ": cannot close"));
  }
  if (status.ok() && ::rename(temporary.c_str(), path.c_str()) != 0) {
    status = ErrnoToStatus(errno, absl::StrCat(path, ": cannot rename into place"));
  }
  if (!status.ok()) {
    ::unlink(temporary.c_str());
    return status;
  }
  return SyncDirectory(dir);
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, int64_t max_bytes) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  // Read to the end rather than trusting st_size: pipes and /proc files report 0 or a page.
  // A regular file's size still refuses an oversized file up front and sizes the buffer once.
  std::string data;
  struct stat st;
  if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode)) {
    if (st.st_size > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path, ": ", st.st_size, " bytes exceed the limit of ", max_bytes, " bytes"));
    }
    data.reserve(static_cast<size_t>(st.st_size));
  }
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat(path, ": cannot read"));
    }
    if (n == 0) break;
    if (static_cast<int64_t>(data.size()) + n > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path, ": larger than the limit of ", max_bytes, " bytes"));
    }
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

}  // namespace invnet
