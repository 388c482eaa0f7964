// smtp::client_session talking to relayd's own smtp::server_session in memory:
// the bytes each writes are fed to the other, in one piece or cut into small
// chunks. What the server spools must be the client's content byte for byte
// (after un-stuffing, minus the Received: line the server adds), and each side's
// view of every recipient must agree. Both state machines are checked at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "smtp/client_session.hpp"
#include "smtp/server_session.hpp"

namespace smtp {
namespace {

struct server_setup {
  std::size_t max_message_size = 1 << 20;
  std::size_t max_recipients = 10;
  bool relay_allowed = true;
};

struct spooled {
  envelope env;
  std::string data;
};

struct conversation {
  std::vector<spooled> spooled_messages;    // the server's side
  std::vector<transaction_result> results;  // the client's side
  std::vector<std::string> events;
  std::string failure;
  bool server_closed = false;
};

// `chunk`: octets moved per step in each direction, 0 for everything at once.
conversation talk(const server_setup& ss, const client_options& co,
                  const std::vector<outgoing_message>& messages, std::size_t chunk) {
  conversation c;
  int next_id = 0;
  session_options so;
  so.hostname = "mx.test";
  so.max_message_size = ss.max_message_size;
  so.max_recipients = ss.max_recipients;
  so.new_id = [&next_id] { return "ID" + std::to_string(++next_id); };
  so.now = [] { return std::int64_t{1700000000}; };
  server_session server(so, client_info{"192.0.2.1", "relay.test", ss.relay_allowed});
  client_session client(co);

  server.start();
  std::string to_client = server.output();
  server.clear_output();
  std::string to_server;
  std::size_t next_message = 0;
  bool client_done = false;

  auto next = [&] {
    while (client.phase() == client_phase::ready) {
      if (next_message == messages.size()) {
        client.quit();
        return;
      }
      if (client.send(messages[next_message++]) != client_session::event::transaction_done) return;
      c.events.push_back("done");
      c.results.push_back(client.take_result());
    }
  };
  auto take = [chunk](std::string& from) {
    const std::size_t n = chunk == 0 ? from.size() : std::min(chunk, from.size());
    std::string piece = from.substr(0, n);
    from.erase(0, n);
    return piece;
  };

  for (int guard = 0; guard < 10'000'000; ++guard) {
    if (!to_client.empty() && !client_done) {
      const std::string piece = take(to_client);
      std::string_view rest = piece;
      while (!client_done) {
        const auto step = client.feed(rest);
        rest.remove_prefix(step.consumed);
        using event = client_session::event;
        if (step.what == event::need_more) {
          // After 354 the content goes out first; keep what is left for later.
          to_client.insert(0, rest);
          break;
        }
        switch (step.what) {
          case event::ready:
            c.events.push_back("ready");
            next();
            break;
          case event::transaction_done:
            c.events.push_back("done");
            c.results.push_back(client.take_result());
            if (client.phase() == client_phase::closed) {
              client_done = true;
            } else {
              next();
            }
            break;
          case event::failed:
            c.events.push_back("failed");
            c.failure = client.failure().response.to_string();
            client_done = true;
            break;
          case event::closed:
            c.events.push_back("closed");
            client_done = true;
            break;
          default:
            ADD_FAILURE() << "unexpected client event";
            client_done = true;
        }
      }
      while (!client.output().empty()) {
        to_server += client.output();
        client.clear_output();
      }
      continue;
    }
    if (!to_server.empty() && !c.server_closed) {
      const std::string piece = take(to_server);
      std::string_view rest = piece;
      while (true) {
        const auto step = server.feed(rest);
        rest.remove_prefix(step.consumed);
        if (step.what == server_session::event::need_more) break;
        if (step.what == server_session::event::close) {
          c.server_closed = true;
          break;
        }
        c.spooled_messages.push_back({server.message_envelope(), server.take_message()});
        server.message_queued();
      }
      to_client += server.output();
      server.clear_output();
      continue;
    }
    break;
  }
  return c;
}

// The spooled message without the Received: field the server put first.
std::string without_received(const std::string& data) {
  EXPECT_TRUE(data.starts_with("Received: ")) << data;
  std::size_t pos = 0;
  while (true) {
    const std::size_t eol = data.find("\r\n", pos);
    if (eol == std::string::npos) return {};
    pos = eol + 2;
    if (pos >= data.size() || (data[pos] != '\t' && data[pos] != ' ')) return data.substr(pos);
  }
}

outgoing_message make_message(const std::string& content, std::vector<std::string> recipients) {
  outgoing_message m;
  m.sender = "alice@src.example";
  m.recipients = std::move(recipients);
  m.body = content;
  m.size = content.size();
  return m;
}

client_options options() {
  client_options o;
  o.helo_name = "relay.test";
  o.body_chunk_size = 1000;
  return o;
}

const std::size_t chunkings[] = {0, 1, 7, 4096};

std::string tricky_content() {
  std::string content =
      "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
      "Message-ID: <tricky@src.example>\r\n"
      "From: alice@src.example\r\n"
      "Subject: dots\r\n"
      "\r\n"
      ".leading dot\r\n"
      "..two dots\r\n"
      ".\r\n"
      " .\r\n"
      "\r\n"
      ".\r\n"
      "8-bit: \xc3\xa9t\xc3\xa9\r\n"
      "...\r\n";
  // Then ~50 KiB of lines, many starting with dots, some empty.
  std::mt19937 rng(42);
  while (content.size() < 50000) {
    const unsigned kind = rng() % 5;
    if (kind == 0) content += ".";
    if (kind == 1) content += "..";
    if (kind != 2) content.append(rng() % 120, static_cast<char>('a' + rng() % 26));
    content += "\r\n";
  }
  content += ".last line\r\n";
  return content;
}

TEST(client_server, content_arrives_byte_identical) {
  const std::string content = tricky_content();
  for (std::size_t chunk : chunkings) {
    outgoing_message m = make_message(content, {"bob@dest.example", "carol@dest.example"});
    m.body_8bit = true;
    const conversation c = talk({}, options(), {m}, chunk);
    EXPECT_EQ(c.events, (std::vector<std::string>{"ready", "done", "closed"})) << chunk;
    ASSERT_EQ(c.spooled_messages.size(), 1u);
    const spooled& s = c.spooled_messages[0];
    EXPECT_TRUE(without_received(s.data) == content) << "chunk " << chunk;
    EXPECT_EQ(s.env.sender, "alice@src.example");
    EXPECT_EQ(smtp::addresses(s.env),
              (std::vector<std::string>{"bob@dest.example", "carol@dest.example"}));
    EXPECT_EQ(s.env.body, body_type::eight_bit_mime);
    EXPECT_EQ(s.env.declared_size, content.size());
    ASSERT_EQ(c.results.size(), 1u);
    for (const auto& r : c.results[0].recipients) {
      EXPECT_EQ(r.status, delivery_status::delivered);
      EXPECT_EQ(r.response.to_string(), "250 2.0.0 Ok: queued as ID1");
    }
    EXPECT_TRUE(c.server_closed);
  }
}

TEST(client_server, content_without_final_crlf_gets_one) {
  const std::string content = "Date: x\r\nMessage-ID: <m@x>\r\n\r\nno newline at the end";
  for (std::size_t chunk : chunkings) {
    const conversation c =
        talk({}, options(), {make_message(content, {"bob@dest.example"})}, chunk);
    ASSERT_EQ(c.spooled_messages.size(), 1u);
    EXPECT_EQ(without_received(c.spooled_messages[0].data), content + "\r\n");
  }
}

TEST(client_server, several_messages_on_one_connection) {
  const std::string a = "Date: x\r\nMessage-ID: <a@x>\r\n\r\nfirst\r\n";
  const std::string b = "Date: x\r\nMessage-ID: <b@x>\r\n\r\n.second\r\n";
  const std::string e;  // empty content: the server adds the missing fields
  for (std::size_t chunk : chunkings) {
    const conversation c = talk({}, options(),
                                {make_message(a, {"x@d.example"}), make_message(b, {"y@d.example"}),
                                 make_message(e, {"z@d.example"})},
                                chunk);
    EXPECT_EQ(c.events, (std::vector<std::string>{"ready", "done", "done", "done", "closed"}));
    ASSERT_EQ(c.spooled_messages.size(), 3u);
    EXPECT_EQ(without_received(c.spooled_messages[0].data), a);
    EXPECT_EQ(without_received(c.spooled_messages[1].data), b);
    EXPECT_EQ(smtp::addresses(c.spooled_messages[2].env), std::vector<std::string>{"z@d.example"});
    ASSERT_EQ(c.results.size(), 3u);
    EXPECT_EQ(c.results[2].recipients[0].response.to_string(), "250 2.0.0 Ok: queued as ID3");
  }
}

TEST(client_server, recipient_limit_gives_per_recipient_results) {
  server_setup ss;
  ss.max_recipients = 2;
  const std::string content = "Date: x\r\nMessage-ID: <a@x>\r\n\r\nhi\r\n";
  for (std::size_t chunk : chunkings) {
    const conversation c =
        talk(ss, options(), {make_message(content, {"a@d.example", "b@d.example", "c@d.example"})},
             chunk);
    ASSERT_EQ(c.spooled_messages.size(), 1u);
    EXPECT_EQ(smtp::addresses(c.spooled_messages[0].env),
              (std::vector<std::string>{"a@d.example", "b@d.example"}));
    ASSERT_EQ(c.results.size(), 1u);
    const auto& r = c.results[0].recipients;
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].status, delivery_status::delivered);
    EXPECT_EQ(r[1].status, delivery_status::delivered);
    EXPECT_EQ(r[2].status, delivery_status::temporary);
    EXPECT_EQ(r[2].response.to_string(), "452 4.5.3 Too many recipients");
    EXPECT_EQ(r[2].in_reply_to, client_phase::rcpt);
  }
}

TEST(client_server, relay_denied_is_permanent_and_the_connection_is_reused) {
  server_setup ss;
  ss.relay_allowed = false;
  const std::string content = "Date: x\r\nMessage-ID: <a@x>\r\n\r\nhi\r\n";
  for (std::size_t chunk : chunkings) {
    const conversation c = talk(ss, options(),
                                {make_message(content, {"a@d.example", "b@d.example"}),
                                 make_message(content, {"c@d.example"})},
                                chunk);
    EXPECT_TRUE(c.spooled_messages.empty());
    EXPECT_EQ(c.events, (std::vector<std::string>{"ready", "done", "done", "closed"}));
    ASSERT_EQ(c.results.size(), 2u);
    for (const auto& result : c.results) {
      for (const auto& r : result.recipients) {
        EXPECT_EQ(r.status, delivery_status::permanent);
        EXPECT_EQ(r.response.to_string(), "554 5.7.1 Relay access denied");
      }
    }
  }
}

TEST(client_server, size_limit_checked_before_mail) {
  server_setup ss;
  ss.max_message_size = 100;
  const std::string big = "Date: x\r\nMessage-ID: <a@x>\r\n\r\n" + std::string(200, 'x') + "\r\n";
  const conversation c = talk(ss, options(), {make_message(big, {"a@d.example"})}, 0);
  EXPECT_TRUE(c.spooled_messages.empty());
  ASSERT_EQ(c.results.size(), 1u);
  const auto& r = c.results[0].recipients[0];
  EXPECT_EQ(r.status, delivery_status::permanent);
  EXPECT_FALSE(r.from_server);
  EXPECT_EQ(r.response.enhanced, "5.3.4");
}

TEST(client_server, server_refuses_overlong_line_after_data) {
  const std::string content =
      "Date: x\r\nMessage-ID: <a@x>\r\n\r\n" + std::string(2000, 'x') + "\r\n";
  for (std::size_t chunk : chunkings) {
    const conversation c = talk({}, options(), {make_message(content, {"a@d.example"})}, chunk);
    EXPECT_TRUE(c.spooled_messages.empty());
    ASSERT_EQ(c.results.size(), 1u);
    const auto& r = c.results[0].recipients[0];
    EXPECT_EQ(r.status, delivery_status::permanent);
    EXPECT_EQ(r.in_reply_to, client_phase::dot);
    EXPECT_EQ(r.response.enhanced, "5.5.2");
  }
}

TEST(client_server, smtp_utf8_transaction) {
  const std::string content = "Date: x\r\nMessage-ID: <a@x>\r\nSubject: caf\xc3\xa9\r\n\r\nhi\r\n";
  outgoing_message m = make_message(content, {"j\xc3\xb6rg@d.example"});
  m.smtputf8 = true;
  m.body_8bit = true;
  const conversation c = talk({}, options(), {m}, 3);
  ASSERT_EQ(c.spooled_messages.size(), 1u);
  EXPECT_TRUE(c.spooled_messages[0].env.smtputf8);
  EXPECT_EQ(smtp::addresses(c.spooled_messages[0].env),
            std::vector<std::string>{"j\xc3\xb6rg@d.example"});
  EXPECT_EQ(without_received(c.spooled_messages[0].data), content);
}

}  // namespace
}  // namespace smtp
