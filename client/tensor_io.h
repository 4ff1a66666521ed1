#ifndef INVNET_CLIENT_TENSOR_IO_H_
#define INVNET_CLIENT_TENSOR_IO_H_

// Reading and writing batches of samples ([batch, dim] float matrices) as files, chosen by the
// file's extension (case-insensitive):
//
//   .npy  NumPy's format. Reads versions 1.0, 2.0 and 3.0, dtypes '<f4' and '<f8' (float64 is
//         rounded to float32), C order, rank 2. A 1-D array [k] is refused as ambiguous (one
//         sample of dimension k, or k samples of dimension 1?): the message says to save it as
//         [1, k] or [k, 1]. Writes version 1.0, '<f4', C order, rank 2.
//   .csv  One sample per line, values separated by commas. The first non-blank line is
//         skipped when none of its fields is a number (a header such as "x0,x1"); blank lines
//         are ignored; '\r\n' line ends are accepted. Writes no header and the shortest
//         decimal form of each float that reads back to the same float. A CSV file cannot
//         hold a [0, n] matrix: it writes as an empty file, which does not read back.
//
// Errors are absl::Status values whose message starts with the path:
//   NOT_FOUND           the file (or, when writing, its directory) does not exist
//   PERMISSION_DENIED   the file cannot be opened for lack of permission
//   INVALID_ARGUMENT    unknown extension; malformed content (bad magic, truncated header or
//                       data, unsupported dtype, Fortran order, rank other than 2, ragged or
//                       non-numeric CSV rows: the message names the line); writing a tensor
//                       that is not a consistent rank-2 matrix
//   other codes         from errno, for other I/O failures
// Reading checks structure only: NaN and Inf read as they are (DenseTensor::Validate rejects
// them before they are sent).
//
// Writes are atomic: the data goes to a temporary file in the destination's directory, which
// is fsync'ed and renamed over the destination, so readers see the old file or the complete
// new one, never a partial one.
//
// All functions are thread-safe (no shared state); concurrent writes to one path leave one of
// the complete files.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/dense_tensor.h"

namespace invnet::client {

enum class TensorFileFormat { kNpy, kCsv };

// The format for `path`'s extension; INVALID_ARGUMENT for anything but .npy and .csv.
absl::StatusOr<TensorFileFormat> TensorFileFormatFromPath(absl::string_view path);

// Reads a [batch, dim] matrix from `path` (format by extension).
absl::StatusOr<DenseTensor> ReadMatrix(const std::string& path);

// Writes `matrix` (rank 2, values.size() == rows * cols) to `path` atomically.
absl::Status WriteMatrix(const std::string& path, const DenseTensor& matrix);

// The codecs on bytes in memory; `source` names the data in error messages (usually a path).
absl::StatusOr<DenseTensor> ParseNpy(absl::string_view bytes, absl::string_view source);
// Precondition: `matrix` is rank 2 with rows * cols values.
std::string EncodeNpy(const DenseTensor& matrix);
absl::StatusOr<DenseTensor> ParseCsv(absl::string_view text, absl::string_view source);
// Precondition: `matrix` is rank 2 with rows * cols values.
std::string EncodeCsv(const DenseTensor& matrix);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_TENSOR_IO_H_
