// smtp::reply_parser: single and multi-line replies, enhanced status codes, the
// lenient forms servers send, every protocol error and limit. Every input is also
// fed split at every byte and byte by byte, which must give the same replies.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtp/reply_parser.hpp"

namespace smtp {
namespace {

// Everything observable from parsing one input.
struct outcome {
  std::vector<std::string> replies;  // "code|enhanced|text" (text '\n' shown as '/')
  std::string error;                 // to_string(failure()) when the parser failed
  std::size_t consumed = 0;
  bool partial = false;
  bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  for (const auto& r : o.replies) os << "[" << r << "] ";
  return os << "error=" << o.error << " consumed=" << o.consumed << " partial=" << o.partial;
}

std::string show(const reply& r) {
  std::string text = r.text;
  for (char& c : text) {
    if (c == '\n') c = '/';
  }
  return std::to_string(r.code) + "|" + r.enhanced + "|" + text;
}

outcome parse_chunks(const std::vector<std::string_view>& chunks, reply_limits limits) {
  reply_parser p(limits);
  outcome o;
  for (std::string_view chunk : chunks) {
    while (true) {
      const auto r = p.put(chunk);
      EXPECT_LE(r.consumed, chunk.size());
      chunk.remove_prefix(r.consumed);
      o.consumed += r.consumed;
      if (r.what == reply_parser::status::reply) {
        o.replies.push_back(show(p.get()));
        continue;
      }
      if (r.what == reply_parser::status::error) {
        o.error = std::string(to_string(p.failure()));
        o.partial = p.partial();
        return o;
      }
      EXPECT_TRUE(chunk.empty());
      break;
    }
  }
  o.partial = p.partial();
  return o;
}

outcome parse(const std::string& input, reply_limits limits = {}) {
  const outcome whole = parse_chunks({input}, limits);
  const std::string_view in = input;
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    const outcome split = parse_chunks({in.substr(0, cut), in.substr(cut)}, limits);
    EXPECT_EQ(split, whole) << "split at " << cut;
    if (split != whole) break;
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
  EXPECT_EQ(parse_chunks(bytes, limits), whole) << "byte by byte";
  return whole;
}

using strings = std::vector<std::string>;

TEST(reply_parser, single_line) {
  const outcome o = parse("220 mx.example ESMTP ready\r\n");
  EXPECT_EQ(o.replies, strings{"220||mx.example ESMTP ready"});
  EXPECT_EQ(o.error, "");
  EXPECT_FALSE(o.partial);
}

TEST(reply_parser, multi_line_keeps_lines) {
  const outcome o = parse("250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
  EXPECT_EQ(o.replies, strings{"250||mx.example/PIPELINING/SIZE 1000/8BITMIME"});
}

TEST(reply_parser, enhanced_code_extracted_and_stripped_from_every_line) {
  const outcome o = parse(
      "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
      "550-5.1.1 Please try double-checking the recipient's email address.\r\n"
      "550 5.1.1 https://support.example/answer\r\n");
  EXPECT_EQ(o.replies, strings{"550|5.1.1|The email account that you tried to reach does not "
                               "exist./Please try double-checking the recipient's email "
                               "address./https://support.example/answer"});
}

TEST(reply_parser, enhanced_code_variants) {
  EXPECT_EQ(parse("250 2.1.5 Ok\r\n").replies, strings{"250|2.1.5|Ok"});
  EXPECT_EQ(parse("451 4.7.650 Rate limited\r\n").replies, strings{"451|4.7.650|Rate limited"});
  EXPECT_EQ(parse("221 2.0.0\r\n").replies, strings{"221|2.0.0|"});
  // Class must match the reply code; otherwise the text is kept as is.
  EXPECT_EQ(parse("250 4.1.1 odd\r\n").replies, strings{"250||4.1.1 odd"});
  // 3xx has no enhanced code class.
  EXPECT_EQ(parse("354 3.0.0 go ahead\r\n").replies, strings{"354||3.0.0 go ahead"});
  // Not a status code: too many digits, missing part, no space after it.
  EXPECT_EQ(parse("250 2.1234.5 x\r\n").replies, strings{"250||2.1234.5 x"});
  EXPECT_EQ(parse("250 2.1 x\r\n").replies, strings{"250||2.1 x"});
  EXPECT_EQ(parse("250 2.1.5Ok\r\n").replies, strings{"250||2.1.5Ok"});
  // A continuation line without the code keeps its text.
  EXPECT_EQ(parse("250-2.0.0 first\r\n250 second\r\n").replies, strings{"250|2.0.0|first/second"});
}

TEST(reply_parser, lenient_forms) {
  // Bare code, bare LF, empty continuation text, trailing space.
  EXPECT_EQ(parse("250\r\n").replies, strings{"250||"});
  EXPECT_EQ(parse("250 ok\n").replies, strings{"250||ok"});
  EXPECT_EQ(parse("250-\r\n250 last\r\n").replies, strings{"250||/last"});
  EXPECT_EQ(parse("250 \r\n").replies, strings{"250||"});
}

TEST(reply_parser, stops_after_each_reply) {
  const outcome o = parse("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No\r\n354 Go\r\n");
  EXPECT_EQ(o.replies, (strings{"250|2.1.0|Ok", "250|2.1.5|Ok", "550|5.1.1|No", "354||Go"}));
  reply_parser p;
  const std::string two = "250 a\r\n250 b\r\n";
  const auto r = p.put(two);
  EXPECT_EQ(r.what, reply_parser::status::reply);
  EXPECT_EQ(r.consumed, 7u);
  EXPECT_EQ(p.take().text, "a");
}

TEST(reply_parser, partial_reply) {
  const outcome o = parse("250-first\r\n250-second");
  EXPECT_TRUE(o.replies.empty());
  EXPECT_TRUE(o.partial);
  EXPECT_EQ(o.consumed, 21u);
}

TEST(reply_parser, malformed_codes) {
  EXPECT_EQ(parse("abc\r\n").error, "malformed reply code");
  EXPECT_EQ(parse("25\r\n").error, "malformed reply code");
  EXPECT_EQ(parse("\r\n").error, "malformed reply code");
  EXPECT_EQ(parse("199 preliminary\r\n").error, "malformed reply code");
  EXPECT_EQ(parse("650 nope\r\n").error, "malformed reply code");
  EXPECT_EQ(parse("2x0 nope\r\n").error, "malformed reply code");
  EXPECT_EQ(parse("250x\r\n").error, "malformed reply line");
  EXPECT_EQ(parse("250\tok\r\n").error, "malformed reply line");
  EXPECT_EQ(parse("250-a\r\n251 b\r\n").error, "different codes in one multi-line reply");
  EXPECT_EQ(parse("250-a\r\n550 b\r\n").error, "different codes in one multi-line reply");
  // A malformed second reply after a good first one.
  const outcome o = parse("250 ok\r\nhello\r\n");
  EXPECT_EQ(o.replies, strings{"250||ok"});
  EXPECT_EQ(o.error, "malformed reply code");
}

TEST(reply_parser, stays_failed_until_reset) {
  reply_parser p;
  EXPECT_EQ(p.put("bad\r\n").what, reply_parser::status::error);
  const auto again = p.put("250 ok\r\n");
  EXPECT_EQ(again.what, reply_parser::status::error);
  EXPECT_EQ(again.consumed, 0u);
  p.reset();
  EXPECT_EQ(p.put("250 ok\r\n").what, reply_parser::status::reply);
}

TEST(reply_parser, line_limit) {
  reply_limits limits;
  limits.max_line_length = 20;
  const std::string fits = "250 " + std::string(14, 'x') + "\r\n";  // 20 octets
  EXPECT_EQ(parse(fits, limits).replies.size(), 1u);
  const std::string over = "250 " + std::string(15, 'x') + "\r\n";
  EXPECT_EQ(parse(over, limits).error, "reply line too long");
  // Detected before the line ends: a server that never sends LF cannot grow memory.
  EXPECT_EQ(parse("250 " + std::string(100, 'x'), limits).error, "reply line too long");
  // The default is lenient: 4 KiB lines pass.
  EXPECT_EQ(parse("250 " + std::string(4000, 'x') + "\r\n").replies.size(), 1u);
  EXPECT_EQ(parse("250 " + std::string(5000, 'x') + "\r\n").error, "reply line too long");
}

TEST(reply_parser, reply_size_and_line_count_limits) {
  reply_limits limits;
  limits.max_line_length = 100;
  limits.max_reply_size = 200;
  limits.max_lines = 5;
  std::string many;
  for (int i = 0; i < 5; ++i) many += "250-line\r\n";
  EXPECT_EQ(parse(many + "250 end\r\n", limits).error, "too many lines in one reply");
  EXPECT_EQ(parse("250-a\r\n250-b\r\n250 c\r\n", limits).replies.size(), 1u);
  std::string big;
  for (int i = 0; i < 4; ++i) big += "250-" + std::string(60, 'y') + "\r\n";
  EXPECT_EQ(parse(big + "250 end\r\n", limits).error, "reply too long");
  // The limits apply per reply, not per connection.
  std::string several;
  for (int i = 0; i < 20; ++i) several += "250 " + std::string(60, 'z') + "\r\n";
  EXPECT_EQ(parse(several, limits).replies.size(), 20u);
}

TEST(reply_parser, leading_enhanced_code) {
  EXPECT_EQ(leading_enhanced_code("5.7.1 Relay denied", '5'), "5.7.1");
  EXPECT_EQ(leading_enhanced_code("4.7.650", '4'), "4.7.650");
  EXPECT_EQ(leading_enhanced_code("2.0.0", '5'), "");
  EXPECT_EQ(leading_enhanced_code("5.7.", '5'), "");
  EXPECT_EQ(leading_enhanced_code("", '2'), "");
  EXPECT_EQ(leading_enhanced_code("3.0.0 x", '3'), "");
}

}  // namespace
}  // namespace smtp
