#include "proto/base/option_files.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::ScratchDirectory;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kCertificate[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
constexpr char kRsaKey[] = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";

class OptionFilesTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& contents) const {
    return dir_.Write(name, contents);
  }

  ScratchDirectory dir_{"option_files"};
  const std::string& directory_ = dir_.path();
};

TEST_F(OptionFilesTest, AnUnreadableFileIsAUsageErrorNamingTheOption) {
  EXPECT_THAT(ReadOptionFile("--tls_cert_file", directory_ + "/missing"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("--tls_cert_file: " + directory_ + "/missing: cannot open")));
  EXPECT_THAT(ReadOptionFile("token_file", Write("big", std::string(100, 'x')), 64),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("token_file: ")));
}

TEST_F(OptionFilesTest, PemFilesMustHoldABlockWithTheLabel) {
  EXPECT_EQ(*ReadPemFile("tls_ca_file", Write("ca.pem", kCertificate), "CERTIFICATE"),
            kCertificate);
  // "RSA PRIVATE KEY" is a private key.
  EXPECT_EQ(*ReadPemFile("tls_key_file", Write("key.pem", kRsaKey), "PRIVATE KEY"), kRsaKey);
  // `openssl ecparam -genkey` writes the curve's parameters first.
  const std::string ec_key = std::string("-----BEGIN EC PARAMETERS-----\nBggq\n-----END EC ") +
                             "PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\nMHcC\n" +
                             "-----END EC PRIVATE KEY-----\n";
  EXPECT_EQ(*ReadPemFile("tls_key_file", Write("ec.pem", ec_key), "PRIVATE KEY"), ec_key);
  EXPECT_THAT(ReadPemFile("tls_cert_file", Write("swapped.pem", kRsaKey), "CERTIFICATE"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tls_cert_file: " + directory_ +
                                 "/swapped.pem holds no PEM certificate")));
  EXPECT_THAT(ReadPemFile("tls_key_file", Write("text", "not pem"), "PRIVATE KEY"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holds no PEM private key")));
  EXPECT_THAT(ReadPemFile("tls_key_file", Write("cut", "-----BEGIN PRIVATE KEY"), "PRIVATE KEY"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holds no PEM private key")));
}

TEST_F(OptionFilesTest, ATokenFileHoldsOneWordOfPrintableAscii) {
  EXPECT_EQ(*ReadTokenFile("token_file", Write("t", "  s3cr3t-token_0123\n\n")),
            "s3cr3t-token_0123");
  EXPECT_THAT(ReadTokenFile("token_file", Write("blank", " \n\t")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
  EXPECT_THAT(ReadTokenFile("token_file", Write("two", "infer abc\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must hold the token alone")));
}

TEST(IsPrintableAsciiWord, AcceptsWhatAnHttp2HeaderValueMayCarry) {
  EXPECT_TRUE(IsPrintableAsciiWord("abc-DEF_012.~!"));
  EXPECT_FALSE(IsPrintableAsciiWord(""));
  EXPECT_FALSE(IsPrintableAsciiWord("two words"));
  EXPECT_FALSE(IsPrintableAsciiWord("tab\there"));
  EXPECT_FALSE(IsPrintableAsciiWord("caf\xc3\xa9"));
  EXPECT_FALSE(IsPrintableAsciiWord(std::string("nul\0x", 5)));
}

}  // namespace
}  // namespace invnet
