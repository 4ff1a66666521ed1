#ifndef INVNET_BASE_FILE_IO_H_
#define INVNET_BASE_FILE_IO_H_

// Whole-file I/O with the guarantees invnet relies on (the server's repository and every file
// the CLI writes): atomic replacement, bounded reads, errno mapped to canonical codes.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

// The marker of the temporary files WriteFileAtomically leaves behind after a crash (a scan for
// leftovers looks for it): `<path>.tmp-<pid>-<random hex>-<counter>`.
inline constexpr char kTemporaryFileMarker[] = ".tmp-";

// Writes `contents` to `path` atomically: a temporary file in the same directory (rename() is
// atomic only within one file system), fsync, rename over `path`, fsync of the directory. A
// crash leaves either the old file or the new one, never a mixture; on error the temporary
// file is removed and `path` is untouched. The new file has mode 0644 (less the umask).
// Codes: INVALID_ARGUMENT (`path` names a directory, or is too long), RESOURCE_EXHAUSTED (disk
// full, quota, no file descriptors), PERMISSION_DENIED, NOT_FOUND (no such directory),
// FAILED_PRECONDITION (a directory stands where the file goes), INTERNAL (other I/O errors);
// the message names the path and the system error (ErrnoToStatus).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Reads a whole file (regular, or a pipe or /proc file whose size is unknown in advance).
// NOT_FOUND when it does not exist, RESOURCE_EXHAUSTED when it holds more than max_bytes,
// the codes above for other I/O errors.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             int64_t max_bytes = int64_t{1} << 31);

// fsyncs a directory (after creating or renaming entries in it). File systems that cannot
// fsync a directory (EINVAL) count as success: the rename itself is still atomic there.
absl::Status SyncDirectory(const std::string& dir);

// The status for a failed system call, the message "<what>: <strerror>": ENOSPC, EDQUOT, EFBIG,
// EMFILE, ENFILE -> RESOURCE_EXHAUSTED; EACCES, EPERM, EROFS -> PERMISSION_DENIED; ENOENT,
// ENOTDIR -> NOT_FOUND; EISDIR, ENOTEMPTY -> FAILED_PRECONDITION; ENAMETOOLONG, ELOOP ->
// INVALID_ARGUMENT; EEXIST -> ALREADY_EXISTS; anything else INTERNAL.
absl::Status ErrnoToStatus(int error_number, absl::string_view what);

}  // namespace invnet

#endif  // INVNET_BASE_FILE_IO_H_
