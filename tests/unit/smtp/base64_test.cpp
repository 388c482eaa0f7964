// smtp/base64: the RFC 4648 section 10 test vectors both ways, round trips of every
// byte value, and the inputs the strict decoder refuses (length, padding in the
// wrong place, characters outside the alphabet, whitespace).
#include "smtp/base64.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtp {
namespace {

struct vector_case {
  const char* decoded;
  const char* encoded;
};
constexpr vector_case rfc4648_vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

TEST(base64, rfc4648_vectors_encode) {
  for (const auto& v : rfc4648_vectors) EXPECT_EQ(base64::encode(v.decoded), v.encoded);
}

TEST(base64, rfc4648_vectors_decode) {
  for (const auto& v : rfc4648_vectors) {
    const auto decoded = base64::decode(v.encoded);
    ASSERT_TRUE(decoded.has_value()) << v.encoded;
    EXPECT_EQ(*decoded, v.decoded);
  }
}

TEST(base64, every_byte_value_round_trips) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  for (std::size_t len = 0; len <= all.size(); len += 37) {
    const std::string in = all.substr(all.size() - len);
    EXPECT_EQ(base64::decode(base64::encode(in)), in) << len;
  }
  EXPECT_EQ(base64::encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(base64::decode("+/8="), std::string("\xfb\xff"));
}

TEST(base64, auth_plain_response) {
  using namespace std::string_literals;
  EXPECT_EQ(base64::encode("\0user\0secret"s), "AHVzZXIAc2VjcmV0");
  EXPECT_EQ(base64::decode("AHVzZXIAc2VjcmV0"), "\0user\0secret"s);
}

TEST(base64, length_not_a_multiple_of_four_is_refused) {
  for (const char* in : {"Z", "Zg", "Zg=", "Zm9vY", "Zm9vYg=", "Zm9vYg==="}) {
    EXPECT_FALSE(base64::decode(in).has_value()) << in;
  }
}

TEST(base64, misplaced_padding_is_refused) {
  for (const char* in : {"====", "Z===", "=g==", "Zg=A", "Zg==Zm9v", "Zm=v", "Z=9v"}) {
    EXPECT_FALSE(base64::decode(in).has_value()) << in;
  }
}

TEST(base64, characters_outside_the_alphabet_are_refused) {
  for (const char* in : {"Zm9v!A==", "Zm9-", "Zm9_", "Zm 9", "Zm9v\r\n", "Zm\x80v", "Zm.v"}) {
    EXPECT_FALSE(base64::decode(in).has_value()) << in;
  }
  EXPECT_FALSE(base64::decode(std::string("Zm9\0", 4)).has_value());
}

}  // namespace
}  // namespace smtp
