#ifndef INVNET_MODELS_FILE_UTIL_H_
#define INVNET_MODELS_FILE_UTIL_H_

// Whole-file I/O with the guarantees invnet's repository relies on.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync, rename
// over `path`, fsync of the directory. A crash leaves either the old file or the new one, never
// a mixture; on error the temporary file is removed and `path` is untouched.
// Codes: RESOURCE_EXHAUSTED (disk full or quota), PERMISSION_DENIED, NOT_FOUND (no such
// directory), INTERNAL (other I/O errors); the message names the path and the system error.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Reads a whole file. NOT_FOUND when it does not exist, RESOURCE_EXHAUSTED when it is larger
// than max_bytes, INTERNAL for other I/O errors.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             int64_t max_bytes = int64_t{1} << 31);

// fsyncs a directory (after creating or renaming entries in it).
absl::Status SyncDirectory(const std::string& dir);

// The status for a failed system call: errno mapped to a canonical code as above.
absl::Status ErrnoToStatus(int error_number, absl::string_view what);

}  // namespace invnet

#endif  // INVNET_MODELS_FILE_UTIL_H_
