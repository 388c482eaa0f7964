// Implements control_protocol.hpp: the verb table, the request parser and the
// small builders both ends use. Compiled into relayd_core and into relayctl;
// it needs Boost.JSON only. Malformed input is an error value, never a throw.
#include "relayd/control_protocol.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace relayd::control_protocol {
namespace json = boost::json;

namespace {

constexpr auto all_verbs = std::to_array<verb_spec>({
    {verb::list, takes::nothing, access::anyone, true},
    {verb::show, takes::id, access::owner},
    {verb::remove, takes::targets, access::admin, true},
    {verb::flush, takes::nothing, access::admin, true},
    {verb::requeue, takes::targets, access::admin, true},
    {verb::hold, takes::targets, access::admin, true},
    {verb::release, takes::targets, access::admin, true},
    {verb::dead_list, takes::nothing, access::admin, true},
    {verb::dead_show, takes::id, access::owner},
    {verb::dead_replay, takes::targets, access::admin, true},
    {verb::dead_purge, takes::targets, access::admin, true},
    {verb::stats, takes::nothing, access::anyone},
    {verb::wait, takes::id_timeout, access::owner},
    {verb::aliases_reload, takes::nothing},
    {verb::dkim_check, takes::nothing},
    {verb::shape, takes::nothing, access::anyone, true},
    {verb::reload, takes::nothing},
    {verb::destinations, takes::nothing, access::anyone},
    {verb::suspend, takes::id_timeout},
    {verb::resume, takes::id},
    {verb::report, takes::nothing},
    {verb::tls_rpt_send, takes::id},
});

// "filter":{...}: absent is the empty filter; anything malformed is an error.
std::expected<queue_filter, std::string> parse_filter(const json::object& req) {
  queue_filter f;
  const json::value* v = req.if_contains(key::filter);
  if (!v) return f;
  const json::object* o = v->if_object();
  if (!o) return std::unexpected("\"filter\" must be an object");
  for (const auto& [k, val] : *o) {
    if (k == key::older) {
      if (!val.is_int64() || val.get_int64() < 0)
        return std::unexpected("filter: \"older\" must be a number of seconds");
      f.older_seconds = val.get_int64();
      continue;
    }
    std::string* field = k == key::from     ? &f.from
                         : k == key::to     ? &f.to
                         : k == key::domain ? &f.domain
                         : k == key::reason ? &f.reason
                                            : nullptr;
    if (!field) return std::unexpected(fmt::format("filter: unknown field \"{}\"", std::string_view(k)));
    if (!val.is_string()) return std::unexpected(fmt::format("filter: \"{}\" must be a string", std::string_view(k)));
    *field = val.get_string();
  }
  if (auto why = check_filter(f); !why.empty()) return std::unexpected("filter: " + why);
  return f;
}

// "ids":[...] (its strings) or "all":true; nullopt when neither names anything.
std::optional<targets> parse_targets(const json::object& req) {
  if (auto* all = req.if_contains(key::all); all && all->is_bool() && all->get_bool())
    return targets{true, {}};
  const auto* ids = req.if_contains(key::ids);
  const auto* arr = ids ? ids->if_array() : nullptr;
  if (!arr) return std::nullopt;
  targets t;
  for (const auto& v : *arr)
    if (v.is_string()) t.ids.emplace_back(v.get_string());
  if (t.ids.empty()) return std::nullopt;
  return t;
}

}  // namespace

std::span<const verb_spec> verbs() { return all_verbs; }

std::expected<request, std::string> parse_request(std::string_view line) {
  json::error_code ec;
  json::value v = json::parse(line, ec);
  const json::object* obj = ec ? nullptr : v.if_object();
  const json::value* cmd = obj ? obj->if_contains(key::cmd) : nullptr;
  if (!cmd || !cmd->is_string()) return std::unexpected("bad request: want {\"cmd\":...}");
  const std::string_view name = cmd->get_string();
  auto spec = std::find_if(all_verbs.begin(), all_verbs.end(),
                           [&](const verb_spec& s) { return s.name == name; });
  if (spec == all_verbs.end()) return std::unexpected(fmt::format("unknown command \"{}\"", name));
  request r{.verb = spec->name, .who = spec->who};
  if (spec->filtered) {
    auto f = parse_filter(*obj);
    if (!f) return std::unexpected(fmt::format("{}: {}", name, f.error()));
    r.filter = std::move(*f);
  }
  if (name == verb::list) {
    if (const json::value* b = obj->if_contains(key::brief); b && b->is_bool()) r.brief = b->get_bool();
  }
  if (name == verb::shape || name == verb::report) {
    if (name == verb::report) r.top = 10;
    if (const json::value* t = obj->if_contains(key::top)) {
      if (!t->is_int64() || t->get_int64() < 1)
        return std::unexpected(fmt::format("{}: \"top\" must be a positive number", name));
      r.top = static_cast<std::size_t>(t->get_int64());
    }
  }
  if (name == verb::report) {
    for (auto [k, target] : {std::pair{key::since, &r.since_seconds}, std::pair{key::before, &r.before_seconds}}) {
      const json::value* v = obj->if_contains(k);
      if (!v) continue;
      if (!v->is_int64() || v->get_int64() < 0)
        return std::unexpected(fmt::format("report: \"{}\" must be a number of seconds", k));
      *target = v->get_int64();
    }
    if (r.before_seconds >= r.since_seconds)
      return std::unexpected("report: \"before\" must be less than \"since\"");
  }
  switch (spec->args) {
    case takes::nothing:
      break;
    case takes::id:
    case takes::id_timeout: {
      const json::value* id = obj->if_contains(key::id);
      if (!id || !id->is_string()) return std::unexpected(fmt::format("{}: missing \"id\"", name));
      r.id = id->get_string();
      if (spec->args == takes::id) break;
      if (const json::value* t = obj->if_contains(key::timeout)) {
        if (!t->is_int64() || t->get_int64() < 1)
          return std::unexpected(fmt::format("{}: \"timeout\" must be a positive number of seconds",
                                             name));
        r.timeout_seconds = t->get_int64();
      }
      break;
    }
    case takes::targets:
      r.which = parse_targets(*obj);
      if (!r.which && !r.filter.empty()) r.which = targets{true, {}};  // every message it matches
      if (!r.which)
        return std::unexpected(fmt::format("{}: give \"ids\", \"all\" or \"filter\"", name));
      break;
  }
  return r;
}

json::object make_request(std::string_view verb) { return json::object{{key::cmd, verb}}; }

json::object make_request(std::string_view verb, std::string_view id) {
  return json::object{{key::cmd, verb}, {key::id, id}};
}

json::object make_request(std::string_view verb, const targets& which) {
  json::object req{{key::cmd, verb}};
  if (which.all) {
    req[key::all] = true;
  } else {
    json::array ids;
    for (const auto& id : which.ids) ids.emplace_back(id);
    req[key::ids] = std::move(ids);
  }
  return req;
}

void add_filter(json::object& req, const queue_filter& f) {
  if (f.empty()) return;
  json::object o;
  if (!f.from.empty()) o[key::from] = f.from;
  if (!f.to.empty()) o[key::to] = f.to;
  if (!f.domain.empty()) o[key::domain] = f.domain;
  if (!f.reason.empty()) o[key::reason] = f.reason;
  if (f.older_seconds) o[key::older] = *f.older_seconds;
  req[key::filter] = std::move(o);
}

json::object make_wait_request(std::string_view id, std::int64_t timeout_seconds) {
  return json::object{{key::cmd, verb::wait}, {key::id, id}, {key::timeout, timeout_seconds}};
}

std::string ok_line(json::object fields) {
  json::object out{{key::ok, true}};
  for (auto& f : fields) out[f.key()] = std::move(f.value());
  return json::serialize(out) + "\n";
}

std::string error_line(std::string_view what) {
  return json::serialize(json::object{{key::ok, false}, {key::error, what}}) + "\n";
}

std::string get_string(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::int64_t get_int(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  if (!v) return 0;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  return 0;
}

bool get_bool(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_bool() && v->get_bool();
}

}  // namespace relayd::control_protocol
