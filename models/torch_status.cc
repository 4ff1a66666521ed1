#include "models/torch_status.h"

#include <exception>
#include <new>
#include <string>

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"

namespace invnet {

absl::Status GuardTorch(absl::string_view context, absl::FunctionRef<absl::Status()> body) {
  try {
    return body();
  } catch (const c10::Error& e) {
    // what_without_backtrace() keeps the message readable; the backtrace is noise for users.
    return absl::InternalError(absl::StrCat(context, ": ", e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(context, ": ", e.what()));
  }
}

}  // namespace invnet
