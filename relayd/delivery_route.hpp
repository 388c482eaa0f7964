// Routes ([[route]], DESIGN "Sender identity and routes"): which route a
// recipient of a stored message takes, the settings a connection of that route
// uses, the order in which a relayhost pool is tried, and the sender rewriting
// done when a message is accepted. Pure (no I/O, no Asio): decided from the
// config and the stored sender/recipient, so a config change applies to queued
// mail. Never fails: no matching route is the default route ([delivery]); a
// message without a From: header keeps its headers as they are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/config.hpp"

namespace relayd {

// Route numbers: 0 is [delivery]; n >= 1 is cfg.routes[n - 1].
inline constexpr std::size_t default_route = 0;

// The first route matching the envelope: `sender` is an exact address (case
// insensitive), `sender_domain` and `recipient_domain` include subdomains. A
// sender route also matches mail whose stored sender is its rewrite_sender (the
// envelope was rewritten when accepted). No match: default_route.
std::size_t route_for(std::span<const route> routes, std::string_view sender,
                      std::string_view recipient);
// "default" for [delivery], else the route's name.
std::string route_name(const config& cfg, std::size_t number);
// The settings of route `number`; for 0 a route built from [delivery].
route route_settings(const config& cfg, std::size_t number);

// Order of attempts over candidates with a preference each (lower first, like
// MX preference): stable by preference, and candidates of equal preference
// rotated by `turn` so that successive connections spread over them.
std::vector<std::size_t> attempt_order(std::span<const std::uint32_t> preference,
                                       std::uint64_t turn);

// The route whose rewrite_sender / rewrite_from applies to mail from `sender`:
// the first route matched by sender or sender_domain (recipient_domain routes
// are skipped: they may not rewrite). nullptr when it rewrites nothing.
const route* rewriting_route(std::span<const route> routes, std::string_view sender);

// The message with its From: field's address replaced by `address` (the display
// name kept) and, when there is no Reply-To: field, the original From: field
// (folding and all) added as Reply-To:. nullopt when the header has no From:.
std::optional<std::string> rewrite_from_header(std::string_view message, std::string_view address);

// At accept, before signing: applies the rewriting route of `sender` to the
// envelope sender and the message. Returns the route's name, or "" when nothing
// applies.
std::string rewrite_sender_identity(const config& cfg, std::string& sender, std::string& message);

}  // namespace relayd
