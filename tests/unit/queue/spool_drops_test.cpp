// The spool's record of imported drop files (enqueue_drop, drop_imported,
// drop_names, forget_drops): the name is committed with the message, a second
// import of the same name stores nothing, the record survives a reopen (the
// crash between the commit and the file's removal), and forgetting it is
// explicit.
#include <gtest/gtest.h>

#include <future>
#include <string>

#include "queue/spool.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::status;

queue::result enqueue_drop_sync(queue::spool& s, std::string name, queue::envelope_record r,
                                std::string body) {
  sync_call<queue::result> c;
  s.enqueue_drop(std::move(name), std::move(r), std::move(body), c.callback());
  return std::get<0>(c.f.get());
}

std::pair<queue::result, std::size_t> forget_sync(queue::spool& s,
                                                  std::vector<std::string> names) {
  sync_call<queue::result, std::size_t> c;
  s.forget_drops(std::move(names), c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

const std::string name_a = "0005F1A2B3C4D5E6.4242.0123456789abcdef";
const std::string name_b = "0005F1A2B3C4D5E7.4243.fedcba9876543210";

TEST(spool_drops, the_name_is_recorded_with_the_message) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->drop_imported(name_a));
  auto rec = make_record(*s, 100);
  const std::string id = rec.id;
  auto r = enqueue_drop_sync(*s, name_a, rec, make_body(id, 100));
  ASSERT_EQ(r.code, status::ok) << r.detail;
  EXPECT_EQ(s->drop_imported(name_a), id);
  EXPECT_EQ(s->drop_names(10), std::vector<std::string>{name_a});
  ASSERT_TRUE(s->get(id));
  EXPECT_EQ(s->body(id), make_body(id, 100));
  // Plain enqueue records no name.
  ASSERT_EQ(enqueue_sync(*s, make_record(*s, 10, 1), "x").code, status::ok);
  EXPECT_EQ(s->drop_names(10).size(), 1u);
}

TEST(spool_drops, a_second_import_of_one_name_stores_nothing) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  auto first = make_record(*s, 10);
  ASSERT_EQ(enqueue_drop_sync(*s, name_a, first, "one").code, status::ok);
  auto again = make_record(*s, 10, 1);
  const auto r = enqueue_drop_sync(*s, name_a, again, "two");
  EXPECT_EQ(r.code, status::error);
  EXPECT_NE(r.detail.find("already imported as " + first.id), std::string::npos) << r.detail;
  EXPECT_FALSE(s->get(again.id));
  EXPECT_FALSE(s->body(again.id));
  EXPECT_EQ(s->message_count(), 1u);
  EXPECT_EQ(s->drop_imported(name_a), first.id);
}

TEST(spool_drops, two_imports_of_one_name_in_one_group_commit_store_one_message) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  std::vector<sync_call<queue::result>> calls(8);
  for (int i = 0; i < 8; ++i)
    s->enqueue_drop(name_b, make_record(*s, 10, i), "body", calls[i].callback());
  int ok = 0;
  for (auto& c : calls) ok += std::get<0>(c.f.get()).code == status::ok;
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(s->message_count(), 1u);
}

TEST(spool_drops, the_record_survives_a_reopen_until_forgotten) {
  temp_dir d;
  const auto o = options_in(d);
  std::string id;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    auto rec = make_record(*s, 10);
    id = rec.id;
    ASSERT_EQ(enqueue_drop_sync(*s, name_a, rec, "body").code, status::ok);
    ASSERT_EQ(enqueue_drop_sync(*s, name_b, make_record(*s, 10, 1), "body").code, status::ok);
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->drop_imported(name_a), id);
  EXPECT_EQ(s->drop_names(1), std::vector<std::string>{name_a});  // the limit holds
  auto [r, n] = forget_sync(*s, {name_a, "never-recorded", std::string(300, 'x'), ""});
  EXPECT_EQ(r.code, status::ok);
  EXPECT_EQ(n, 1u);
  EXPECT_FALSE(s->drop_imported(name_a));
  EXPECT_EQ(s->drop_names(10), std::vector<std::string>{name_b});
  // Forgetting the name never touches the message.
  EXPECT_TRUE(s->get(id));
  // After forgetting, the name could be imported again: the importer forgets
  // only names whose files are gone.
  EXPECT_EQ(enqueue_drop_sync(*s, name_a, make_record(*s, 10, 2), "b").code, status::ok);
}

TEST(spool_drops, bad_names_are_refused) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  const auto r = enqueue_drop_sync(*s, std::string(300, 'n'), make_record(*s, 10), "b");
  EXPECT_EQ(r.code, status::error);
  EXPECT_EQ(s->message_count(), 0u);
  EXPECT_FALSE(s->drop_imported(std::string(300, 'n')));
  EXPECT_FALSE(s->drop_imported(""));
}

}  // namespace
