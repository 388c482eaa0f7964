// smtp::dot_stuffer: leading dots, missing final CRLF, empty content, a
// terminator inside the content, bare CR/LF normalised, any split of the input
// giving the same bytes, and a round trip through relayd's own dot_reader.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "smtp/dot_reader.hpp"
#include "smtp/dot_stuffer.hpp"

namespace smtp {
namespace {

std::string stuff_pieces(const std::vector<std::string_view>& pieces) {
  dot_stuffer s;
  std::string out;
  for (std::string_view p : pieces) s.put(p, out);
  s.finish(out);
  return out;
}

// dot_stuff() and every two-way split and byte-by-byte feeding must agree.
std::string stuffed(const std::string& content) {
  const std::string whole = dot_stuff(content);
  const std::string_view in = content;
  for (std::size_t cut = 0; cut <= in.size(); ++cut) {
    EXPECT_EQ(stuff_pieces({in.substr(0, cut), in.substr(cut)}), whole) << "split at " << cut;
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
  EXPECT_EQ(stuff_pieces(bytes), whole) << "byte by byte";
  return whole;
}

TEST(dot_stuffer, plain_content) {
  EXPECT_EQ(stuffed("Subject: x\r\n\r\nHello\r\n"), "Subject: x\r\n\r\nHello\r\n.\r\n");
}

TEST(dot_stuffer, empty_content) {
  EXPECT_EQ(stuffed(""), ".\r\n");
}

TEST(dot_stuffer, missing_final_crlf_is_added) {
  EXPECT_EQ(stuffed("Hello"), "Hello\r\n.\r\n");
  EXPECT_EQ(stuffed("a\r\nb"), "a\r\nb\r\n.\r\n");
  EXPECT_EQ(stuffed("."), "..\r\n.\r\n");
}

TEST(dot_stuffer, leading_dots_are_doubled) {
  EXPECT_EQ(stuffed(".hidden\r\n"), "..hidden\r\n.\r\n");
  EXPECT_EQ(stuffed("a\r\n.\r\nb\r\n"), "a\r\n..\r\nb\r\n.\r\n");
  EXPECT_EQ(stuffed("..\r\n...\r\n"), "...\r\n....\r\n.\r\n");
  EXPECT_EQ(stuffed("a.b\r\n x.\r\n"), "a.b\r\n x.\r\n.\r\n");  // only at line start
  EXPECT_EQ(stuffed("\r\n.\r\n"), "\r\n..\r\n.\r\n");
}

TEST(dot_stuffer, terminator_inside_content_is_escaped) {
  const std::string out = stuffed("Subject: s\r\n\r\nbefore\r\n.\r\nMAIL FROM:<evil@x>\r\n");
  EXPECT_EQ(out, "Subject: s\r\n\r\nbefore\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n");
  EXPECT_EQ(out.find("\r\n.\r\n"), out.size() - 5);
}

TEST(dot_stuffer, bare_line_endings_become_crlf) {
  // A receiver that ends lines at a bare LF or CR must not see a terminator.
  EXPECT_EQ(stuffed("a\n.\nb"), "a\r\n..\r\nb\r\n.\r\n");
  EXPECT_EQ(stuffed("a\r.\rb\r\n"), "a\r\n..\r\nb\r\n.\r\n");
  EXPECT_EQ(stuffed("x\r\n.\n.\r\n"), "x\r\n..\r\n..\r\n.\r\n");
  EXPECT_EQ(stuffed("end\r"), "end\r\n.\r\n");
  EXPECT_EQ(stuffed("\r"), "\r\n.\r\n");
  EXPECT_EQ(stuffed("\n"), "\r\n.\r\n");
  EXPECT_EQ(stuffed("\r\r\n"), "\r\n\r\n.\r\n");
}

TEST(dot_stuffer, reusable_after_finish) {
  dot_stuffer s;
  std::string out;
  s.put("abc", out);
  s.finish(out);
  s.put(".x\r\n", out);
  s.finish(out);
  EXPECT_EQ(out, "abc\r\n.\r\n..x\r\n.\r\n");
}

// What the stuffer writes, relayd's own dot_reader reads back unchanged.
TEST(dot_stuffer, round_trip_through_dot_reader) {
  std::mt19937 rng(7);
  const std::string alphabet = ".\r\nab.";
  for (int round = 0; round < 300; ++round) {
    std::string content;
    const int lines = static_cast<int>(rng() % 12);
    for (int l = 0; l < lines; ++l) {
      const int len = static_cast<int>(rng() % 5);
      for (int i = 0; i < len; ++i) content.push_back(rng() % 3 == 0 ? '.' : 'x');
      content += "\r\n";
    }
    const std::string wire = dot_stuff(content);
    dot_reader reader(1 << 20, 1000);
    reader.reset();
    const auto r = reader.put(wire);
    ASSERT_EQ(r.what, dot_reader::status::complete) << content;
    EXPECT_EQ(r.consumed, wire.size());
    EXPECT_EQ(reader.content(), content);
  }
}

TEST(dot_stuffer, large_content_in_chunks) {
  // 8 MiB of 78-octet lines, a tenth of them starting with a dot.
  std::string content;
  content.reserve(8u << 20);
  std::size_t dotted = 0;
  for (std::size_t i = 0; content.size() < (8u << 20); ++i) {
    if (i % 10 == 0) {
      content += '.';
      ++dotted;
    } else {
      content += 'x';
    }
    content.append(75, 'y');
    content += "\r\n";
  }
  const std::string whole = dot_stuff(content);
  EXPECT_EQ(whole.size(), content.size() + dotted + 3);
  dot_stuffer s;
  std::string chunked;
  for (std::size_t pos = 0; pos < content.size(); pos += 65536) {
    s.put(std::string_view(content).substr(pos, 65536), chunked);
  }
  s.finish(chunked);
  EXPECT_EQ(chunked, whole);
}

}  // namespace
}  // namespace smtp
