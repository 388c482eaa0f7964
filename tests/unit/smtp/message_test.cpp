// smtp message header helpers: header-block detection, Date and Message-ID
// formats, the Received: trace field and where each header goes.
#include "smtp/message.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtp {
namespace {

TEST(message, header_block_ends_at_the_empty_line) {
  const std::string m = "Subject: hi\r\nFrom: a@b\r\n\r\nDate: not a header\r\n";
  EXPECT_EQ(header_block_end(m), m.find("\r\n\r\n") + 2);
  EXPECT_FALSE(has_header(m, "Date"));
  EXPECT_TRUE(has_header(m, "subject"));
  EXPECT_TRUE(has_header(m, "FROM"));
}

TEST(message, field_names_match_whole_and_case_insensitively) {
  const std::string m = "message-id: <x@y>\r\nDate-Received: x\r\n\r\n";
  EXPECT_TRUE(has_header(m, "Message-ID"));
  EXPECT_FALSE(has_header(m, "Date"));
  EXPECT_TRUE(has_header("Date : Mon\r\n", "Date"));  // obsolete WSP before colon
}

TEST(message, folded_lines_belong_to_their_field) {
  const std::string m = "Subject: a\r\n Date: folded, not a field\r\nX: y\r\n\r\nbody\r\n";
  EXPECT_FALSE(has_header(m, "Date"));
  EXPECT_TRUE(has_header(m, "X"));
  EXPECT_EQ(header_block_end(m), m.find("\r\n\r\n") + 2);
}

TEST(message, message_id_for_the_log) {
  EXPECT_EQ(message_id_for_log("Subject: a\r\nMessage-ID: <abc@example.org>\r\n\r\nx\r\n"),
            "<abc@example.org>");
  EXPECT_EQ(message_id_for_log("message-id:\r\n  <folded@example.org> (comment)\r\n\r\n"),
            "<folded@example.org>");
  EXPECT_EQ(message_id_for_log("Message-ID: bare@example.org junk\r\n\r\n"), "bare@example.org");
  EXPECT_EQ(message_id_for_log("Message-ID: <a\x01" "b c@x>\r\n\r\n"), "<a?bc@x>");
  EXPECT_EQ(message_id_for_log("Subject: a\r\n\r\nMessage-ID: <body@x>\r\n"), "");
  EXPECT_EQ(message_id_for_log("Message-IDs: <no@x>\r\n\r\n"), "");
  EXPECT_EQ(message_id_for_log("Message-ID: <" + std::string(400, 'a') + ">\r\n\r\n").size(),
            250u);
}

TEST(message, a_non_header_line_ends_the_block) {
  EXPECT_EQ(header_block_end("Subject: a\r\nhello world\r\nDate: x\r\n"), 12u);
  EXPECT_FALSE(has_header("Subject: a\r\nhello world\r\nDate: x\r\n", "Date"));
  EXPECT_EQ(header_block_end("just a body\r\n"), 0u);
  EXPECT_EQ(header_block_end(" leading space: x\r\n"), 0u);
  EXPECT_EQ(header_block_end(""), 0u);
  EXPECT_EQ(header_block_end("A: b\r\nC: d\r\n"), 12u);
}

TEST(message, date_format) {
  EXPECT_EQ(format_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(format_date(1700000000), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(format_date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(format_date(4102444799), "Thu, 31 Dec 2099 23:59:59 +0000");
}

TEST(message, message_id) {
  EXPECT_EQ(make_message_id("ABC123", "mx.test"), "<ABC123@mx.test>");
}

received_info sample() {
  received_info info;
  info.helo = "client.example";
  info.client_hostname = "host.client.example";
  info.client_ip = "192.0.2.7";
  info.hostname = "mx.test";
  info.queue_id = "Q1";
  info.recipients = {"rcpt@dest.example"};
  info.time = 1700000000;
  return info;
}

TEST(message, received_with_one_recipient_has_for_clause) {
  EXPECT_EQ(received_header(sample()),
            "Received: from client.example (host.client.example [192.0.2.7])\r\n"
            "\tby mx.test (relayd) with ESMTP id Q1\r\n"
            "\tfor <rcpt@dest.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST(message, received_with_several_recipients_has_no_for_clause) {
  received_info info = sample();
  info.recipients.push_back("other@dest.example");
  info.client_hostname.clear();
  info.client_ip = "::1";
  info.esmtp = false;
  EXPECT_EQ(received_header(info),
            "Received: from client.example (unknown [IPv6:::1])\r\n"
            "\tby mx.test (relayd) with SMTP id Q1; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST(message, received_protocol_for_smtputf8) {
  received_info info = sample();
  info.smtputf8 = true;
  EXPECT_NE(received_header(info).find("with UTF8SMTP id Q1"), std::string::npos);
}

TEST(message, received_cannot_be_split_by_client_text) {
  received_info info = sample();
  info.helo = "evil\r\nX-Injected: yes";
  const std::string h = received_header(info);
  EXPECT_EQ(h.find("\r\nX-Injected"), std::string::npos);
  EXPECT_TRUE(h.starts_with("Received: from evil  X-Injected: yes (")) << h;
}

TEST(message, received_keeps_eight_bit_text_only_for_smtputf8) {
  received_info info = sample();
  info.helo = "caf\xc3\xa9.example";
  EXPECT_TRUE(received_header(info).starts_with("Received: from caf??.example ("));
  info.smtputf8 = true;
  EXPECT_TRUE(received_header(info).starts_with("Received: from caf\xc3\xa9.example ("));
}

const std::string received = "Received: x\r\n";
const std::string date = "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n";
const std::string msgid = "Message-ID: <Q1@mx.test>\r\n";

std::string build(std::string_view content) {
  return build_message(content, received, 1700000000, "<Q1@mx.test>");
}

TEST(message, adds_date_and_message_id_at_the_end_of_the_header_block) {
  EXPECT_EQ(build("Subject: hi\r\n\r\nbody\r\n"),
            received + "Subject: hi\r\n" + date + msgid + "\r\nbody\r\n");
}

TEST(message, keeps_existing_date_and_message_id) {
  const std::string content =
      "Date: Mon, 1 Jan 2024 00:00:00 +0100\r\nMESSAGE-ID: <a@b>\r\n\r\nb\r\n";
  EXPECT_EQ(build(content), received + content);
}

TEST(message, adds_only_what_is_missing) {
  EXPECT_EQ(build("Message-Id: <a@b>\r\n\r\nb\r\n"),
            received + "Message-Id: <a@b>\r\n" + date + "\r\nb\r\n");
  EXPECT_EQ(build("date: x\r\n\r\nb\r\n"), received + "date: x\r\n" + msgid + "\r\nb\r\n");
}

TEST(message, body_without_headers_gets_a_separator) {
  EXPECT_EQ(build("hello\r\n"), received + date + msgid + "\r\nhello\r\n");
  EXPECT_EQ(build("Subject: a\r\nhello\r\n"),
            received + "Subject: a\r\n" + date + msgid + "\r\nhello\r\n");
}

TEST(message, body_after_an_empty_line_keeps_it) {
  EXPECT_EQ(build("\r\nbody\r\n"), received + date + msgid + "\r\nbody\r\n");
}

TEST(message, empty_and_header_only_content) {
  EXPECT_EQ(build(""), received + date + msgid);
  EXPECT_EQ(build("Subject: a\r\n"), received + "Subject: a\r\n" + date + msgid);
}

TEST(message, date_in_the_body_does_not_count) {
  EXPECT_EQ(build("Subject: a\r\n\r\nDate: body text\r\n"),
            received + "Subject: a\r\n" + date + msgid + "\r\nDate: body text\r\n");
}

// A local submission names the submitter instead of HELO, host name and address.
TEST(message, received_for_a_local_submitter) {
  received_info info = sample();
  info.client_ip.clear();
  info.local = local_identity{.uid = 33, .gid = 33, .pid = 99, .user = "www-data"};
  EXPECT_EQ(received_header(info),
            "Received: from local (uid 33, www-data)\r\n"
            "\tby mx.test (relayd) with ESMTP id Q1\r\n"
            "\tfor <rcpt@dest.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
  info.local->user.clear();  // a uid without a login name
  info.local->uid = 4000;
  EXPECT_EQ(received_header(info).substr(0, 34), "Received: from local (uid 4000)\r\n\t");
}

}  // namespace
}  // namespace smtp
