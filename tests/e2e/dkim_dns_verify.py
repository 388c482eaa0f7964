#!/usr/bin/env python3
"""DKIM verification by an independent verifier (Debian's python3-dkim, dkimpy)
that fetches the key records from a real DNS server: its default DNS path
(dnspython's default resolver) is pointed at the test dnsmasq on 127.0.0.1:PORT,
no dnsfunc hook. No tests here.

    from dkim_dns_verify import VERIFIER, txt_strings, verify
    Dnsmasq(txt={"s1._domainkey.example.org": txt_strings(record)})
    ok, why = verify(message_bytes, dns_port, idx=0)

VERIFIER is the python that has dkimpy, dnspython and nacl (the system
/usr/bin/python3 when ctest runs another one), or None: callers skip then.
"""

import json
import os
import subprocess
import sys

# argv[1]: the DNS port, argv[2]: the signature's index; the message on stdin.
# Prints "True" or "False REASON" and, on stderr, the names it looked up.
_SCRIPT = r"""
import sys
import dns.resolver
import dkim
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
r.lifetime = 5
dns.resolver.default_resolver = r   # what dkim's own DNS lookup (dnsplug) uses
d = dkim.DKIM(sys.stdin.buffer.read())
try:
    print(bool(d.verify(idx=int(sys.argv[2]))))
except Exception as e:  # a body hash mismatch or a key of the wrong type raises
    print(False, type(e).__name__, e)
"""


def _find_verifier():
    for py in (sys.executable, "/usr/bin/python3"):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import dkim, nacl, dns.resolver"], capture_output=True).returncode == 0:
            return py
    return None


VERIFIER = _find_verifier()


def txt_strings(record):
    """A key record as dnsmasq's --txt-record value: character-strings of at
    most 255 octets, separated by commas (a DKIM record has no comma)."""
    assert "," not in record, record
    return ",".join(record[i:i + 255] for i in range(0, len(record), 255))


def verify(message, dns_port, idx=0):
    """(True, "") when signature `idx` of `message` verifies with the key
    record served on 127.0.0.1:dns_port, else (False, the verifier's reason)."""
    r = subprocess.run([VERIFIER, "-c", _SCRIPT, str(dns_port), str(idx)], input=message,
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"verifier failed: {r.stderr.decode(errors='replace')}")
    out = r.stdout.decode(errors="replace").strip()
    return out == "True", out


if __name__ == "__main__":
    print(json.dumps({"verifier": VERIFIER}))
