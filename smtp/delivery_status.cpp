// The client's failure policy (see delivery_status.hpp): reply classes to a
// recipient's status, throttling replies, DSN status codes and the names of
// statuses and causes. Total over every reply code; nothing here can fail.
#include "smtp/delivery_status.hpp"

namespace smtp {

std::string_view to_string(delivery_status s) {
  switch (s) {
    case delivery_status::delivered:
      return "delivered";
    case delivery_status::temporary:
      return "temporary";
    case delivery_status::permanent:
      return "permanent";
  }
  return "?";
}

delivery_status status_of(const reply& r) {
  switch (r.code / 100) {
    case 2:
      return delivery_status::delivered;
    case 5:
      return delivery_status::permanent;
    default:
      return delivery_status::temporary;
  }
}

std::string_view to_string(failure_cause c) {
  switch (c) {
    case failure_cause::greeting_refused:
      return "greeting refused";
    case failure_cause::hello_refused:
      return "EHLO/HELO refused";
    case failure_cause::tls_unavailable:
      return "TLS unavailable";
    case failure_cause::auth_rejected:
      return "authentication rejected";
    case failure_cause::auth_temporary:
      return "authentication failed temporarily";
    case failure_cause::auth_unavailable:
      return "authentication unavailable";
    case failure_cause::service_closing:
      return "service closing";
    case failure_cause::protocol_error:
      return "protocol error";
    case failure_cause::connection_lost:
      return "connection lost";
  }
  return "?";
}

bool is_throttling(const reply& r) {
  if (r.code == 421) return true;
  return r.code / 100 == 4 && r.enhanced.starts_with("4.7.");
}

std::string dsn_status(const reply& r) {
  if (!r.enhanced.empty()) return r.enhanced;
  switch (status_of(r)) {
    case delivery_status::delivered:
      return "2.0.0";
    case delivery_status::permanent:
      return "5.0.0";
    case delivery_status::temporary:
      break;
  }
  return "4.0.0";
}

}  // namespace smtp
