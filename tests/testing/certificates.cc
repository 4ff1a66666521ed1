#include "tests/testing/certificates.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/testing/subprocess.h"

namespace invnet::testing {
namespace {

// RunCommand executes a path, not a name: look `openssl` up in $PATH.
std::string OpensslPath() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
    const std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/openssl");
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "/usr/bin/openssl";
}

absl::Status Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), OpensslPath());
  absl::StatusOr<CommandResult> result = RunCommand(args, absl::Seconds(60));
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(args, " "), " failed (exit ",
                                            result->exit_code, "): ", result->err));
  }
  return absl::OkStatus();
}

// A new key at `key` and a certificate request for `subject` at `csr`.
absl::Status NewKeyAndRequest(const std::string& key, const std::string& csr,
                              const std::string& subject) {
  return Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", subject});
}

absl::Status SelfSignedCa(const std::string& dir, const std::string& name) {
  // `req -x509` marks the certificate CA:TRUE (OpenSSL's default v3_ca extensions).
  return Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-days", "2", "-keyout", dir + "/" + name + ".key", "-out",
                  dir + "/" + name + ".pem", "-subj", "/CN=invnet-test-" + name});
}

absl::Status SignedByCa(const std::string& dir, const std::string& name, const std::string& subject,
                        const std::string& extensions) {
  const std::string base = dir + "/" + name;
  if (!(std::ofstream(base + ".ext") << extensions)) {
    return absl::InternalError(absl::StrCat("cannot write ", base, ".ext"));
  }
  absl::Status status = NewKeyAndRequest(base + ".key", base + ".csr", subject);
  if (!status.ok()) return status;
  return Openssl({"x509", "-req", "-in", base + ".csr", "-CA", dir + "/ca.pem", "-CAkey",
                  dir + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile", base + ".ext",
                  "-out", base + ".pem"});
}

}  // namespace

absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir) {
  for (absl::Status status :
       {SelfSignedCa(dir, "ca"), SelfSignedCa(dir, "other_ca"),
        SignedByCa(dir, "server", "/CN=localhost",
                   "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
        SignedByCa(dir, "client", "/CN=invnet-test-client",
                   "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")}) {
    if (!status.ok()) return status;
  }
  TestCertificates certificates;
  certificates.ca_cert = dir + "/ca.pem";
  certificates.server_cert = dir + "/server.pem";
  certificates.server_key = dir + "/server.key";
  certificates.client_cert = dir + "/client.pem";
  certificates.client_key = dir + "/client.key";
  certificates.other_ca_cert = dir + "/other_ca.pem";
  return certificates;
}

}  // namespace invnet::testing
