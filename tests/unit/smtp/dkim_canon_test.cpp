// smtp/dkim_canon: the relaxed canonicalizations byte by byte (RFC 6376
// 3.4.6's example exactly), the split of a message, the h= list with
// over-signing, the header hash input (bottom-up instances), the From: domain
// and the folding of a DKIM-Signature field.
#include "smtp/dkim_canon.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace {

using namespace smtp::dkim;

// RFC 6376 3.4.6, with <SP>, <HTAB> and <CRLF> written out.
constexpr std::string_view rfc_example =
    "A: X\r\n"
    "B : Y\t\r\n"
    "\tZ  \r\n"
    "\r\n"
    " C \r\n"
    "D \t E\r\n"
    "\r\n"
    "\r\n";

TEST(DkimCanon, Rfc6376Example346Relaxed) {
  const split_message m = split(rfc_example);
  ASSERT_EQ(m.fields.size(), 2u);
  std::string headers;
  for (auto f : m.fields) headers += relaxed_header(f);
  EXPECT_EQ(headers, "a:X\r\nb:Y Z\r\n");
  EXPECT_EQ(relaxed_body(m.body), " C\r\nD E\r\n");
}

TEST(DkimCanon, SplitKeepsFoldedLinesInTheirField) {
  const split_message m = split("Subject: one\r\n two\r\nTo: a@b\r\n\r\nbody\r\n");
  ASSERT_EQ(m.fields.size(), 2u);
  EXPECT_EQ(m.fields[0], "Subject: one\r\n two");
  EXPECT_EQ(m.fields[1], "To: a@b");
  EXPECT_EQ(m.body, "body\r\n");
  EXPECT_EQ(field_name(m.fields[0]), "Subject");
}

TEST(DkimCanon, MessageWithoutSeparatorIsAllHeader) {
  const split_message m = split("From: a@b\r\nTo: c@d\r\n");
  EXPECT_EQ(m.fields.size(), 2u);
  EXPECT_TRUE(m.body.empty());
}

TEST(DkimCanon, RelaxedBody) {
  EXPECT_EQ(relaxed_body(""), "");
  EXPECT_EQ(relaxed_body("\r\n\r\n"), "");
  // A last line without CRLF gets one (what a verifier computes too).
  EXPECT_EQ(relaxed_body("no newline at the end"), "no newline at the end\r\n");
  EXPECT_EQ(relaxed_body("a  \t b \r\n\r\nc\t\r\n\r\n \r\n"), "a b\r\n\r\nc\r\n");
  // 8-bit bytes and a bare CR are content, not whitespace.
  EXPECT_EQ(relaxed_body("caf\xc3\xa9 \r\nx\ry\r\n"), "caf\xc3\xa9\r\nx\ry\r\n");
}

// Lines without whitespace to fix are taken whole, eight bytes at a time: a run
// of spaces, a tab or a space at the end is found at every position, including
// across the eight-byte steps.
TEST(DkimCanon, RelaxedBodyFindsWhitespaceAtEveryPosition) {
  for (std::size_t at = 0; at < 20; ++at) {
    const std::string before(at, 'a'), after(19 - at, 'b');
    SCOPED_TRACE(at);
    EXPECT_EQ(relaxed_body(before + "  " + after + "\r\n"),
              before + (after.empty() ? "" : " " + after) + "\r\n");
    EXPECT_EQ(relaxed_body(before + "\t" + after + "\r\n"),
              before + (after.empty() ? "" : " " + after) + "\r\n");
    EXPECT_EQ(relaxed_body(before + " " + after + " \r\n"),
              before + (after.empty() ? "" : " " + after) + "\r\n");
    EXPECT_EQ(relaxed_body(before + " x" + after + "\r\n"), before + " x" + after + "\r\n");
  }
}

TEST(DkimCanon, RelaxedHeaderLowercasesNameOnly) {
  EXPECT_EQ(relaxed_header("SUBJECT :  Hello   World  "), "subject:Hello World\r\n");
  EXPECT_EQ(relaxed_header("Subject:\r\n\tfolded\r\n value"), "subject:folded value\r\n");
}

TEST(DkimCanon, OverSigningListsEachOnceMoreThanPresent) {
  const split_message m = split(
      "From: a@example.org\r\nTo: b@example.net\r\nTo: c@example.net\r\nSubject: s\r\n"
      "Received: by x\r\nX-Mailer: y\r\nMIME-Version: 1.0\r\n\r\n");
  const auto names = signed_names(m.fields);
  auto count = [&](std::string_view n) { return std::ranges::count(names, std::string(n)); };
  EXPECT_EQ(count("From"), 2);
  EXPECT_EQ(count("To"), 3);
  EXPECT_EQ(count("Subject"), 2);
  EXPECT_EQ(count("Cc"), 1);  // absent: listed once, so an added Cc: breaks the signature
  EXPECT_EQ(count("Date"), 1);
  EXPECT_EQ(count("Message-ID"), 1);
  EXPECT_EQ(count("Reply-To"), 1);
  EXPECT_EQ(count("MIME-Version"), 1);  // recommended, not over-signed
  EXPECT_EQ(count("Content-Type"), 0);  // absent and not over-signed
  EXPECT_EQ(count("Received"), 0);
  EXPECT_EQ(count("X-Mailer"), 0);
}

TEST(DkimCanon, HeaderHashInputTakesInstancesFromTheBottom) {
  const split_message m = split("To: first@x\r\nFrom: a@b\r\nTo: second@x\r\n\r\n");
  EXPECT_EQ(header_hash_input(m.fields, {"To", "To", "To", "From", "From"}),
            "to:second@x\r\nto:first@x\r\nfrom:a@b\r\n");
  // A From: added on top of a signed message changes the input: over-signing.
  const split_message added = split("From: evil@b\r\nTo: first@x\r\nFrom: a@b\r\nTo: second@x\r\n\r\n");
  EXPECT_NE(header_hash_input(added.fields, {"To", "To", "To", "From", "From"}),
            header_hash_input(m.fields, {"To", "To", "To", "From", "From"}));
}

TEST(DkimCanon, FromDomain) {
  auto domain = [](std::string_view msg) { return from_domain(split(msg).fields); };
  EXPECT_EQ(domain("From: ann@Mail.Example.ORG\r\n\r\n"), "mail.example.org");
  EXPECT_EQ(domain("From: \"Doe, <j@evil.test>\" <john@example.org>\r\n\r\n"), "example.org");
  EXPECT_EQ(domain("From: john@example.org (John <x@evil.test>)\r\n\r\n"), "example.org");
  EXPECT_EQ(domain("From: Ann\r\n <ann@example.org>, bob@example.net\r\n\r\n"), "example.org");
  EXPECT_EQ(domain("from: \"a@b\"@example.com\r\n\r\n"), "example.com");
  EXPECT_EQ(domain("Sender: a@example.org\r\n\r\n"), std::nullopt);
  EXPECT_EQ(domain("From: undisclosed\r\n\r\n"), std::nullopt);
}

TEST(DkimCanon, FoldedSignatureStaysWithinWidthAndBStartsALine) {
  std::vector<tag> tags = {{"v", "1"},
                           {"a", "rsa-sha256"},
                           {"c", "relaxed/relaxed"},
                           {"d", "example.org"},
                           {"s", "sel"},
                           {"t", "1700000000"},
                           {"h", "From:From:To:To:Cc:Subject:Subject:Date:Date:Message-ID:"
                                 "Message-ID:Reply-To:MIME-Version:Content-Type"},
                           {"bh", std::string(44, 'B')},
                           {"b", std::string(344, 'S')}};
  const std::string folded = fold_signature(tags);
  std::size_t start = 0;
  while (start < folded.size()) {
    const std::size_t end = std::min(folded.find("\r\n", start), folded.size());
    EXPECT_LE(end - start, 78u) << folded.substr(start, end - start);
    start = end + 2;
  }
  // Unfolded, the tags read back as written.
  std::string unfolded;
  for (std::size_t i = 0; i < folded.size(); ++i) {
    if (folded.compare(i, 3, "\r\n ") == 0) {
      i += 2;
      continue;
    }
    unfolded += folded[i];
  }
  EXPECT_NE(unfolded.find("h=From:From:To:To:Cc:Subject:Subject:Date:Date:Message-ID:Message-ID:"
                          "Reply-To:MIME-Version:Content-Type;"),
            std::string::npos)
      << unfolded;
  EXPECT_NE(unfolded.find("b=" + std::string(344, 'S')), std::string::npos);
  // Removing b='s value leaves what the signer hashed: the same field with b= empty.
  tags.back().value.clear();
  const std::string empty_b = fold_signature(tags);
  EXPECT_EQ(folded.substr(0, folded.rfind("b=") + 2), empty_b);
  EXPECT_TRUE(empty_b.ends_with("\r\n b="));
}

}  // namespace
