// smtp::line_reader: CRLF framing, the 512-octet command line limit, bare LF,
// and the same result for any split of the input.
#include "smtp/line_reader.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace smtp {
namespace {

// Feeds `chunks` and returns what was reported: "L:<line>", "TOO_LONG", "BARE_LF".
std::vector<std::string> read_all(line_reader& reader, const std::vector<std::string>& chunks) {
  std::vector<std::string> events;
  for (const std::string& chunk : chunks) {
    std::string_view rest = chunk;
    while (!rest.empty()) {
      const auto r = reader.put(rest);
      EXPECT_LE(r.consumed, rest.size());
      rest.remove_prefix(r.consumed);
      switch (r.what) {
        case line_reader::status::need_more:
          EXPECT_TRUE(rest.empty());
          break;
        case line_reader::status::line:
          events.push_back("L:" + std::string(reader.line()));
          break;
        case line_reader::status::too_long:
          events.push_back("TOO_LONG");
          break;
        case line_reader::status::bare_lf:
          events.push_back("BARE_LF");
          break;
      }
    }
  }
  return events;
}

std::vector<std::string> read_whole(const std::string& input, std::size_t limit = 512) {
  line_reader reader(limit);
  return read_all(reader, {input});
}

// Every split point and byte-by-byte must give the same events as one buffer.
void expect_split_invariant(const std::string& input, std::size_t limit = 512) {
  const auto whole = read_whole(input, limit);
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    line_reader reader(limit);
    EXPECT_EQ(read_all(reader, {input.substr(0, cut), input.substr(cut)}), whole) << "cut " << cut;
  }
  line_reader reader(limit);
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  EXPECT_EQ(read_all(reader, bytes), whole);
}

TEST(line_reader, yields_lines_without_crlf) {
  EXPECT_EQ(read_whole("EHLO a\r\nNOOP\r\n\r\n"),
            (std::vector<std::string>{"L:EHLO a", "L:NOOP", "L:"}));
}

TEST(line_reader, consumes_exactly_one_line) {
  line_reader reader;
  const auto r = reader.put("NOOP\r\nQUIT\r\n");
  EXPECT_EQ(r.what, line_reader::status::line);
  EXPECT_EQ(r.consumed, 6u);
  EXPECT_EQ(reader.line(), "NOOP");
}

TEST(line_reader, partial_line_needs_more) {
  line_reader reader;
  const auto r = reader.put("NOO");
  EXPECT_EQ(r.what, line_reader::status::need_more);
  EXPECT_EQ(r.consumed, 3u);
  EXPECT_TRUE(reader.partial());
  const auto r2 = reader.put("P\r");
  EXPECT_EQ(r2.what, line_reader::status::need_more);
  const auto r3 = reader.put("\n");
  EXPECT_EQ(r3.what, line_reader::status::line);
  EXPECT_EQ(reader.line(), "NOOP");
}

TEST(line_reader, accepts_exactly_512_octets_including_crlf) {
  const std::string line(510, 'a');
  EXPECT_EQ(read_whole(line + "\r\n"), (std::vector<std::string>{"L:" + line}));
}

TEST(line_reader, rejects_a_513_octet_line_and_recovers) {
  const std::string line(511, 'a');
  EXPECT_EQ(read_whole(line + "\r\nNOOP\r\n"), (std::vector<std::string>{"TOO_LONG", "L:NOOP"}));
}

TEST(line_reader, discards_a_very_long_line_without_buffering_it) {
  line_reader reader;
  const std::string big(1 << 20, 'x');
  std::vector<std::string> events = read_all(reader, {big, big, "\r\nQUIT\r\n"});
  EXPECT_EQ(events, (std::vector<std::string>{"TOO_LONG", "L:QUIT"}));
}

TEST(line_reader, bare_lf_is_an_error) {
  EXPECT_EQ(read_whole("NOOP\nQUIT\r\n"), (std::vector<std::string>{"BARE_LF", "L:QUIT"}));
  EXPECT_EQ(read_whole("\n"), (std::vector<std::string>{"BARE_LF"}));
}

TEST(line_reader, over_long_line_ending_in_bare_lf_is_reported_once) {
  EXPECT_EQ(read_whole(std::string(600, 'a') + "\n"), (std::vector<std::string>{"TOO_LONG"}));
}

TEST(line_reader, lone_cr_stays_in_the_line) {
  // The command parser refuses it; the reader only frames.
  EXPECT_EQ(read_whole("NO\rOP\r\n"), (std::vector<std::string>{"L:NO\rOP"}));
}

TEST(line_reader, small_limit) {
  EXPECT_EQ(read_whole("ab\r\nabc\r\nab\n", 4),
            (std::vector<std::string>{"L:ab", "TOO_LONG", "BARE_LF"}));
}

TEST(line_reader, any_split_gives_the_same_lines) {
  expect_split_invariant("EHLO a\r\nMAIL FROM:<a@b>\r\nbare\nRCPT TO:<c@d>\r\n\r\nQUI");
  expect_split_invariant(std::string(515, 'z') + "\r\nNOOP\r\n" + std::string(510, 'y') + "\r\n");
  expect_split_invariant("ab\r\r\nabcd\r\n\r\r\r\n", 5);
}

TEST(line_reader, reset_forgets_partial_line) {
  line_reader reader;
  reader.put("GARBAGE");
  reader.reset();
  EXPECT_FALSE(reader.partial());
  EXPECT_EQ(read_all(reader, {"NOOP\r\n"}), (std::vector<std::string>{"L:NOOP"}));
}

}  // namespace
}  // namespace smtp
