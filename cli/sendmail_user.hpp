// Who runs sendmail: the login name and full name of a uid, for the default
// envelope sender (login@[local] domain) and the From: header it adds.
//
// sendmail is linked statically (cli/CMakeLists.txt: one process per message,
// and the dynamic loader was a quarter of its start-up), so it must not call
// getpwuid(3): glibc's static NSS would dlopen the host's modules (systemd,
// ldap, sss) into a process built against another libc. Instead it reads
// /etc/passwd itself, as NSS's "files" source does, and for a uid that file
// does not know (DynamicUser= services, directory users) asks the host's own
// `getent passwd UID`, which goes through NSS in a normal dynamic process.
//
// Failure: no entry anywhere is not an error (the caller names the user
// "uidN"); an unreadable file or a getent that fails counts as no entry.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace sendmail {

struct passwd_entry {
  std::string login;
  std::string full_name;  // the GECOS field up to its first ',' ("" when empty)
};

// The first line of passwd(5)-format `text` ("name:pw:uid:gid:gecos:home:shell")
// whose uid is `uid`. Malformed lines, NIS "+"/"-" entries and empty names are
// skipped, as glibc's files source skips them.
std::optional<passwd_entry> find_passwd_entry(std::string_view text, uid_t uid);

struct user_lookup {
  std::string passwd_file = "/etc/passwd";
  std::string getent = "/usr/bin/getent";  // "" = do not ask NSS
};

// `uid`'s entry: from `passwd_file`, else from `getent passwd UID` (run with
// the real uid and gid, an empty environment and stdin closed, so that a
// set-group-id sendmail lends the child nothing). Output over 64 KiB or a
// getent that does not exit 0 gives no entry.
std::optional<passwd_entry> lookup_user(uid_t uid, const user_lookup& where = {});

}  // namespace sendmail
