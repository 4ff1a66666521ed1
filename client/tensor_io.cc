#include "client/tensor_io.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/base/file_io.h"

namespace invnet::client {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;

absl::Status Invalid(absl::string_view source, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", reason));
}

absl::Status CheckWritableMatrix(const DenseTensor& matrix, absl::string_view path) {
  if (!matrix.is_matrix()) {
    return Invalid(path, absl::StrCat("can only write a rank-2 tensor, got shape ",
                                      ShapeToString(matrix.shape)));
  }
  absl::StatusOr<int64_t> count = NumElements(matrix.shape, path);
  if (!count.ok()) return count.status();
  if (static_cast<uint64_t>(*count) != matrix.values.size()) {
    return Invalid(path, absl::StrCat("shape ", ShapeToString(matrix.shape), " needs ", *count,
                                      " values, got ", matrix.values.size()));
  }
  return absl::OkStatus();
}

// Little-endian decoding by bytes, so the reader does not depend on the host's byte order.
uint64_t LoadLittleEndian(const char* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

void AppendLittleEndian(uint64_t value, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// The header of a .npy file is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
// This parses exactly that subset: string keys; string, True/False and int-tuple values.
struct NpyHeader {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<int64_t>> shape;
};

class NpyHeaderParser {
 public:
  explicit NpyHeaderParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<NpyHeader> Parse() {
    NpyHeader header;
    if (!Consume('{')) return Error("expected '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      std::string key;
      if (!ParseString(&key)) return Error("expected a quoted key");
      if (!Consume(':')) return Error(absl::StrCat("expected ':' after '", key, "'"));
      if (key == "descr") {
        std::string descr;
        if (!ParseString(&descr)) {
          return Error(
              "'descr' is not a simple dtype string (structured dtypes are not supported)");
        }
        header.descr = descr;
      } else if (key == "fortran_order") {
        bool value = false;
        if (!ParseBool(&value)) return Error("'fortran_order' is not True or False");
        header.fortran_order = value;
      } else if (key == "shape") {
        std::vector<int64_t> shape;
        if (!ParseTuple(&shape)) return Error("'shape' is not a tuple of integers");
        header.shape = std::move(shape);
      } else {
        return Error(absl::StrCat("unexpected key '", key, "'"));
      }
      SkipSpace();
      if (Consume('}')) break;
      if (!Consume(',')) return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("trailing characters after '}'");
    if (!header.descr || !header.fortran_order || !header.shape) {
      return Error("needs the keys 'descr', 'fortran_order' and 'shape'");
    }
    return header;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("malformed header (", what, ")"));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view word) {
    SkipSpace();
    if (absl::StartsWith(text_.substr(pos_), word)) {
      pos_ += word.size();
      return true;
    }
    return false;
  }
  bool ParseString(std::string* out) {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return false;
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) return false;
    *out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool ParseBool(bool* out) {
    if (ConsumeWord("True")) {
      *out = true;
      return true;
    }
    if (ConsumeWord("False")) {
      *out = false;
      return true;
    }
    return false;
  }
  bool ParseInt(int64_t* out) {
    SkipSpace();
    const char* begin = text_.data() + pos_;
    const char* end = text_.data() + text_.size();
    auto [ptr, ec] = std::from_chars(begin, end, *out);
    if (ec != std::errc() || ptr == begin) return false;
    pos_ += static_cast<size_t>(ptr - begin);
    return true;
  }
  // "()", "(3,)", "(3, 2)", "(3, 2,)".
  bool ParseTuple(std::vector<int64_t>* out) {
    if (!Consume('(')) return false;
    while (true) {
      if (Consume(')')) return true;
      int64_t value = 0;
      if (!ParseInt(&value)) return false;
      out->push_back(value);
      if (Consume(')')) return true;
      if (!Consume(',')) return false;
    }
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

// The number text of one CSV field, or nullopt when it is not a number.
std::optional<float> ParseCsvNumber(absl::string_view field) {
  float value = 0;
  if (field.empty() || !absl::SimpleAtof(field, &value)) return std::nullopt;
  return value;
}

}  // namespace

absl::StatusOr<TensorFileFormat> TensorFileFormatFromPath(absl::string_view path) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".npy")) return TensorFileFormat::kNpy;
  if (absl::EndsWith(lower, ".csv")) return TensorFileFormat::kCsv;
  return Invalid(path, "unknown file type (expected a .npy or .csv file)");
}

absl::StatusOr<DenseTensor> ParseNpy(absl::string_view bytes, absl::string_view source) {
  if (bytes.size() < kNpyMagicSize ||
      bytes.substr(0, kNpyMagicSize) != absl::string_view(kNpyMagic, kNpyMagicSize)) {
    return Invalid(source, "not a .npy file (bad magic string)");
  }
  if (bytes.size() < kNpyMagicSize + 2) return Invalid(source, "truncated header");
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    return Invalid(source, absl::StrCat("unsupported .npy version ", major, ".", minor,
                                        " (1.0, 2.0 and 3.0 are supported)"));
  }
  // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4.
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kNpyMagicSize + 2 + length_bytes;
  if (bytes.size() < prefix) return Invalid(source, "truncated header");
  const uint64_t header_length =
      LoadLittleEndian(bytes.data() + kNpyMagicSize + 2, static_cast<int>(length_bytes));
  if (bytes.size() - prefix < header_length) {
    return Invalid(source, absl::StrCat("truncated header (", header_length, " bytes declared, ",
                                        bytes.size() - prefix, " present)"));
  }
  absl::StatusOr<NpyHeader> header = NpyHeaderParser(bytes.substr(prefix, header_length)).Parse();
  if (!header.ok()) return Invalid(source, header.status().message());

  const std::string& descr = *header->descr;
  int item_size = 0;
  if (descr == "<f4") {
    item_size = 4;
  } else if (descr == "<f8") {
    item_size = 8;
  } else if (descr == ">f4" || descr == ">f8") {
    return Invalid(source, absl::StrCat("big-endian dtype '", descr,
                                        "' is not supported (save as '<f4' or '<f8')"));
  } else {
    return Invalid(source, absl::StrCat("dtype '", descr,
                                        "' is not supported (float32 '<f4' or float64 '<f8')"));
  }
  if (*header->fortran_order) {
    return Invalid(source,
                   "Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  }
  std::vector<int64_t> shape = *header->shape;
  if (shape.size() == 1) {
    // [k] could be one sample of dimension k or k samples of dimension 1: refuse to guess.
    const std::string k = absl::StrCat(shape[0]);
    return Invalid(source,
                   absl::StrCat("a 1-D array of shape [", k, "] is ambiguous: save it as [1, ", k,
                                "] (one sample of dimension ", k, ") or [", k, ", 1] (", k,
                                " samples of dimension 1), e.g. with "
                                "a.reshape(1, -1) or a.reshape(-1, 1)"));
  }
  if (shape.size() != 2) {
    return Invalid(source, absl::StrCat("expected a 2-D array [batch, dim], got shape ",
                                        ShapeToString(shape)));
  }
  absl::StatusOr<int64_t> count = NumElements(shape, source);
  if (!count.ok()) return count.status();

  const absl::string_view data = bytes.substr(prefix + header_length);
  const uint64_t expected = static_cast<uint64_t>(*count);
  if (data.size() / static_cast<uint64_t>(item_size) != expected ||
      data.size() % static_cast<uint64_t>(item_size) != 0) {
    return Invalid(source,
                   absl::StrCat("shape ", ShapeToString(*header->shape), " of '", descr, "' needs ",
                                expected, " values, the file holds ", data.size(), " data bytes"));
  }
  DenseTensor tensor;
  tensor.shape = std::move(shape);
  tensor.values.resize(static_cast<size_t>(expected));
  for (size_t i = 0; i < tensor.values.size(); ++i) {
    const char* p = data.data() + i * static_cast<size_t>(item_size);
    if (item_size == 4) {
      const uint32_t bits = static_cast<uint32_t>(LoadLittleEndian(p, 4));
      std::memcpy(&tensor.values[i], &bits, sizeof(bits));
    } else {
      const uint64_t bits = LoadLittleEndian(p, 8);
      double value = 0;
      std::memcpy(&value, &bits, sizeof(bits));
      // Converting an out-of-range double to float is undefined behaviour: saturate to the
      // infinity that DenseTensor::Validate then reports.
      if (std::isfinite(value) && std::fabs(value) > std::numeric_limits<float>::max()) {
        value = std::copysign(std::numeric_limits<double>::infinity(), value);
      }
      tensor.values[i] = static_cast<float>(value);
    }
  }
  return tensor;
}

std::string EncodeNpy(const DenseTensor& matrix) {
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (",
                                    matrix.rows(), ", ", matrix.cols(), "), }");
  // NumPy pads the header with spaces and a final newline so that the data starts at a
  // multiple of 64 bytes (aligned loads for memory-mapped arrays).
  const size_t prefix = kNpyMagicSize + 2 + 2;
  const size_t unpadded = prefix + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');

  std::string out(kNpyMagic, kNpyMagicSize);
  out.push_back('\x01');
  out.push_back('\x00');
  AppendLittleEndian(header.size(), 2, &out);
  out += header;
  out.reserve(out.size() + matrix.values.size() * 4);
  for (float value : matrix.values) {
    uint32_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    AppendLittleEndian(bits, 4, &out);
  }
  return out;
}

absl::StatusOr<DenseTensor> ParseCsv(absl::string_view text, absl::string_view source) {
  DenseTensor tensor;
  int64_t cols = -1;
  int64_t cols_line = 0;
  int64_t rows = 0;
  bool seen_first_line = false;
  int64_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);  // also drops the '\r' of CRLF files
    if (line.empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    std::vector<float> row;
    row.reserve(fields.size());
    size_t bad_field = fields.size();
    for (size_t i = 0; i < fields.size(); ++i) {
      std::optional<float> value = ParseCsvNumber(absl::StripAsciiWhitespace(fields[i]));
      if (!value) {
        if (bad_field == fields.size()) bad_field = i;
        continue;
      }
      row.push_back(*value);
    }
    const bool first_line = !seen_first_line;
    seen_first_line = true;
    if (bad_field != fields.size()) {
      if (first_line && row.empty()) continue;  // A header: no field is a number.
      return Invalid(
          source, absl::StrCat("line ", line_number, ", field ", bad_field + 1, ": '",
                               absl::StripAsciiWhitespace(fields[bad_field]), "' is not a number"));
    }
    const int64_t width = static_cast<int64_t>(row.size());
    if (cols < 0) {
      cols = width;
      cols_line = line_number;
    } else if (width != cols) {
      return Invalid(source,
                     absl::StrCat("line ", line_number, " has ", width, " values, expected ", cols,
                                  " (as on line ", cols_line, ")"));
    }
    tensor.values.insert(tensor.values.end(), row.begin(), row.end());
    ++rows;
  }
  if (rows == 0) return Invalid(source, "no samples (no numeric lines)");
  tensor.shape = {rows, cols};
  return tensor;
}

std::string EncodeCsv(const DenseTensor& matrix) {
  std::string out;
  out.reserve(matrix.values.size() * 12);
  char buffer[64];
  for (int64_t r = 0; r < matrix.rows(); ++r) {
    for (int64_t c = 0; c < matrix.cols(); ++c) {
      if (c > 0) out.push_back(',');
      // Shortest representation that parses back to the same float.
      auto result = std::to_chars(buffer, buffer + sizeof(buffer), matrix.at(r, c));
      out.append(buffer, result.ptr);
    }
    out.push_back('\n');
  }
  return out;
}

absl::StatusOr<DenseTensor> ReadMatrix(const std::string& path) {
  absl::StatusOr<TensorFileFormat> format = TensorFileFormatFromPath(path);
  if (!format.ok()) return format.status();
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  return *format == TensorFileFormat::kNpy ? ParseNpy(*bytes, path) : ParseCsv(*bytes, path);
}

absl::Status WriteMatrix(const std::string& path, const DenseTensor& matrix) {
  absl::StatusOr<TensorFileFormat> format = TensorFileFormatFromPath(path);
  if (!format.ok()) return format.status();
  absl::Status valid = CheckWritableMatrix(matrix, path);
  if (!valid.ok()) return valid;
  return WriteFileAtomically(
      path, *format == TensorFileFormat::kNpy ? EncodeNpy(matrix) : EncodeCsv(matrix));
}

}  // namespace invnet::client
