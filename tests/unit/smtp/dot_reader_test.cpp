// smtp::dot_reader: the DATA terminator, dot-unstuffing, size and line limits,
// and the refusal of bare CR / bare LF that stops SMTP smuggling, for any split
// of the input.
#include "smtp/dot_reader.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace smtp {
namespace {

struct outcome {
  dot_reader::status what = dot_reader::status::need_more;
  std::size_t consumed = 0;  // total over all put() calls
  std::string content;
  bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  return os << "status " << static_cast<int>(o.what) << " consumed " << o.consumed << " content ["
            << o.content << "]";
}

outcome read_chunks(const std::vector<std::string_view>& chunks, std::size_t max_size,
                    std::size_t max_line) {
  dot_reader reader(max_size, max_line);
  reader.reset();
  outcome o;
  for (std::string_view chunk : chunks) {
    const auto r = reader.put(chunk);
    EXPECT_LE(r.consumed, chunk.size());
    o.consumed += r.consumed;
    o.what = r.what;
    if (r.what != dot_reader::status::need_more) break;
    EXPECT_EQ(r.consumed, chunk.size());
  }
  o.content = reader.content();
  return o;
}

// Reads `input` whole, split at every position and byte by byte; all must agree.
outcome read(std::string_view input, std::size_t max_size = 1 << 20, std::size_t max_line = 1000) {
  const outcome whole = read_chunks({input}, max_size, max_line);
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    EXPECT_EQ(read_chunks({input.substr(0, cut), input.substr(cut)}, max_size, max_line), whole)
        << "split at " << cut;
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < input.size(); ++i) bytes.push_back(input.substr(i, 1));
  EXPECT_EQ(read_chunks(bytes, max_size, max_line), whole) << "byte by byte";
  return whole;
}

TEST(dot_reader, ends_at_crlf_dot_crlf) {
  const std::string input = "Subject: hi\r\n\r\nbody\r\n.\r\nMAIL FROM:<x@y>\r\n";
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::complete);
  EXPECT_EQ(o.consumed, input.find("MAIL"));
  EXPECT_EQ(o.content, "Subject: hi\r\n\r\nbody\r\n");
}

TEST(dot_reader, empty_message) {
  const outcome o = read(".\r\n");
  EXPECT_EQ(o.what, dot_reader::status::complete);
  EXPECT_EQ(o.consumed, 3u);
  EXPECT_EQ(o.content, "");
}

TEST(dot_reader, needs_more_until_the_terminator) {
  const outcome o = read("line\r\n.");
  EXPECT_EQ(o.what, dot_reader::status::need_more);
  EXPECT_EQ(o.consumed, 7u);
}

TEST(dot_reader, removes_dot_stuffing) {
  const outcome o = read("..\r\n...x\r\n. y\r\n.z\r\na.b\r\n.\r\n");
  EXPECT_EQ(o.what, dot_reader::status::complete);
  EXPECT_EQ(o.content, ".\r\n..x\r\n y\r\nz\r\na.b\r\n");
}

TEST(dot_reader, dot_inside_a_line_does_not_end_the_message) {
  const outcome o = read("a\r\n x.\r\n.\r\n");
  EXPECT_EQ(o.what, dot_reader::status::complete);
  EXPECT_EQ(o.content, "a\r\n x.\r\n");
}

TEST(dot_reader, keeps_binary_and_eight_bit_bytes) {
  const std::string input("caf\xc3\xa9 \x01\x00\x7f\r\n.\r\n", 14);
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::complete);
  EXPECT_EQ(o.content, input.substr(0, 11));
}

// The four smuggling sequences of the issue, and variants: each must stop the
// reader at the offending byte, never end the message there.
TEST(dot_reader, bare_lf_dot_bare_lf_is_refused) {
  const std::string input = "Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@x>\r\n";
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::bare_lf);
  EXPECT_EQ(o.consumed, input.find("\n.\n") + 1);
}

TEST(dot_reader, bare_cr_dot_bare_cr_is_refused) {
  const std::string input = "hello\r.\rMAIL FROM:<evil@x>\r\n";
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::bare_cr);
  EXPECT_EQ(o.consumed, input.find('\r') + 2);
}

TEST(dot_reader, bare_lf_dot_crlf_is_refused) {
  const std::string input = "hello\n.\r\nMAIL FROM:<evil@x>\r\n";
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::bare_lf);
  EXPECT_EQ(o.consumed, 6u);
}

TEST(dot_reader, crlf_dot_bare_lf_is_refused) {
  const std::string input = "hello\r\n.\nMAIL FROM:<evil@x>\r\n";
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::bare_lf);
  EXPECT_EQ(o.consumed, 9u);
}

TEST(dot_reader, crlf_dot_bare_cr_is_refused) {
  const outcome o = read("hello\r\n.\rMAIL\r\n");
  EXPECT_EQ(o.what, dot_reader::status::bare_cr);
  EXPECT_EQ(o.consumed, 10u);
}

TEST(dot_reader, bare_lf_at_the_start_is_refused) {
  EXPECT_EQ(read("\n.\r\n").what, dot_reader::status::bare_lf);
  EXPECT_EQ(read(".\n").what, dot_reader::status::bare_lf);
}

TEST(dot_reader, cr_cr_lf_is_a_bare_cr) {
  const outcome o = read("a\r\r\n.\r\n");
  EXPECT_EQ(o.what, dot_reader::status::bare_cr);
  EXPECT_EQ(o.consumed, 3u);
}

TEST(dot_reader, size_limit_counts_unstuffed_content_and_reads_to_the_end) {
  // "123456\r\n" is 8 octets of content, exactly the limit.
  EXPECT_EQ(read("123456\r\n.\r\n", 8).what, dot_reader::status::complete);
  EXPECT_EQ(read("..23456\r\n.\r\n", 8).what, dot_reader::status::complete);
  const std::string big = "1234567\r\nmore\r\n.\r\nNOOP\r\n";
  const outcome o = read(big, 8);
  EXPECT_EQ(o.what, dot_reader::status::too_big);
  EXPECT_EQ(o.consumed, big.find("NOOP"));
  EXPECT_EQ(o.content, "");
}

TEST(dot_reader, too_big_still_refuses_bare_lf) {
  EXPECT_EQ(read("123456789012\r\nx\n.\n", 8).what, dot_reader::status::bare_lf);
}

TEST(dot_reader, line_length_limit_includes_crlf_but_not_the_stuffed_dot) {
  EXPECT_EQ(read("12345678\r\n.\r\n", 1000, 10).what, dot_reader::status::complete);
  EXPECT_EQ(read("..2345678\r\n.\r\n", 1000, 10).what, dot_reader::status::complete);
  const std::string input = "123456789\r\nok\r\n.\r\nNOOP\r\n";
  const outcome o = read(input, 1000, 10);
  EXPECT_EQ(o.what, dot_reader::status::line_too_long);
  EXPECT_EQ(o.consumed, input.find("NOOP"));
  EXPECT_EQ(o.content, "");
}

TEST(dot_reader, default_line_limit_is_1000_with_crlf) {
  const std::string ok(998, 'a');
  EXPECT_EQ(read(ok + "\r\n.\r\n").what, dot_reader::status::complete);
  EXPECT_EQ(read(ok + "a\r\n.\r\n").what, dot_reader::status::line_too_long);
}

TEST(dot_reader, reset_starts_a_new_message) {
  dot_reader reader(100, 100);
  reader.reset();
  EXPECT_EQ(reader.put("a\r\n.\r\n").what, dot_reader::status::complete);
  EXPECT_EQ(reader.take_content(), "a\r\n");
  reader.reset(50);
  EXPECT_EQ(reader.put("b\r\n.\r\n").what, dot_reader::status::complete);
  EXPECT_EQ(reader.content(), "b\r\n");
  EXPECT_EQ(reader.size(), 3u);
}

TEST(dot_reader, large_message_any_split) {
  std::string input;
  for (int i = 0; i < 40; ++i) input += (i % 3 == 0 ? ".." : "") + std::string(i, 'x') + "\r\n";
  input += ".\r\n";
  const outcome o = read(input);
  EXPECT_EQ(o.what, dot_reader::status::complete);
  EXPECT_EQ(o.consumed, input.size());
}

}  // namespace
}  // namespace smtp
