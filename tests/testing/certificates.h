#ifndef INVNET_TESTS_TESTING_CERTIFICATES_H_
#define INVNET_TESTS_TESTING_CERTIFICATES_H_

// Throw-away PKI for TLS tests, made with the `openssl` command at test time (nothing secret is
// checked in, and nothing expires in the repository): a CA, a server certificate for localhost
// and 127.0.0.1 (subjectAltName), a client certificate, both signed by the CA, and a second,
// unrelated CA. ECDSA P-256 keys, valid for two days.

#include <string>

#include "absl/status/statusor.h"

namespace invnet::testing {

struct TestCertificates {
  std::string ca_cert;  // PEM file paths
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
  std::string other_ca_cert;  // a CA that signed neither certificate
};

// Writes the files into the existing directory `dir`. INTERNAL (with openssl's output) when
// openssl fails or is missing.
absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir);

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_CERTIFICATES_H_
