// sendmail --wait's reading of relayd's answer: one line per recipient and the
// exit status (0 all delivered, 69 any failed, 75 not final).
#include "cli/sendmail_wait.hpp"

#include <gtest/gtest.h>
#include <sysexits.h>

#include <boost/json/parse.hpp>

namespace sendmail {
namespace {

wait_report report(std::string_view json_text) {
  return read_wait_answer(boost::json::parse(json_text).as_object());
}

TEST(SendmailWait, AllDeliveredIsZero) {
  auto r = report(R"({"ok":true,"final":true,"recipients":[
      {"address":"a@x.example","state":"delivered","last_reply":"250 2.0.0 \"Ok\""},
      {"address":"b@y.example","state":"delivered","last_reply":"250 ok"}]})");
  EXPECT_EQ(r.exit_status, EX_OK);
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_EQ(r.lines[0], "to=<a@x.example> status=delivered reply=\"250 2.0.0 \\\"Ok\\\"\"");
}

TEST(SendmailWait, AnyFailedIs69) {
  auto r = report(R"({"ok":true,"final":true,"recipients":[
      {"address":"a@x.example","state":"delivered","last_reply":"250"},
      {"address":"b@y.example","state":"failed","last_reply":"550 5.1.1 no"}]})");
  EXPECT_EQ(r.exit_status, EX_UNAVAILABLE);
  EXPECT_EQ(r.lines[1], "to=<b@y.example> status=failed reply=\"550 5.1.1 no\"");
}

TEST(SendmailWait, NotFinalIs75) {
  auto r = report(R"({"ok":true,"final":false,"recipients":[
      {"address":"a@x.example","state":"deferred","last_reply":"451 4.3.0 later"}]})");
  EXPECT_EQ(r.exit_status, EX_TEMPFAIL);
  EXPECT_EQ(r.lines[0], "to=<a@x.example> status=deferred reply=\"451 4.3.0 later\"");
}

TEST(SendmailWait, AnAnswerWithoutRecipientsIsNotSuccess) {
  EXPECT_EQ(report(R"({"ok":true,"final":true,"recipients":[]})").exit_status, EX_TEMPFAIL);
  EXPECT_EQ(report(R"({"ok":true,"final":true})").exit_status, EX_TEMPFAIL);
}

}  // namespace
}  // namespace sendmail
