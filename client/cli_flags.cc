#include "client/cli_flags.h"

namespace invnet::client::cli {

const std::vector<FlagInfo>& AllFlags() {
  static const auto* flags = new std::vector<FlagInfo>{
#define INVNET_CLI_FLAG_INFO(type, name, default_value, value_name, help) {#name, value_name, help},
      INVNET_CLI_FLAGS(INVNET_CLI_FLAG_INFO)
#undef INVNET_CLI_FLAG_INFO
  };
  return *flags;
}

const FlagInfo* FindFlag(absl::string_view name) {
  for (const FlagInfo& flag : AllFlags()) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

std::string FlagHelp(absl::string_view name) {
  const FlagInfo* flag = FindFlag(name);
  return flag == nullptr ? "" : flag->help;
}

}  // namespace invnet::client::cli
