#!/bin/sh
# Runs a command in a private mount namespace in which /usr/sbin/sendmail (and so
# /usr/lib/sendmail, a link to it on Debian) is the given program, so that programs
# with a compiled-in MTA path (cron) use relayd's sendmail without the host being
# touched. Extra mounts, only inside that namespace:
#   --bind SRC DST   bind-mount SRC over DST (both must exist)
#   --tmpfs DIR      an empty tmpfs over DIR (e.g. /run: cron's pid and reboot files)
# Usage: private_sendmail.sh SENDMAIL [--bind SRC DST]... [--tmpfs DIR]... -- CMD [ARG]...
# Promise: the host's mount table is never changed; the script refuses to mount
# anything unless it runs in a mount namespace other than its caller's. Needs root and
# unshare(1); fails (exit 2, one line on stderr) when a mount fails or a usage is wrong.
set -eu
die() { echo "private_sendmail.sh: $*" >&2; exit 2; }

if [ "${PRIVATE_SENDMAIL_NS:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || die "needs root (mount namespace)"
    PRIVATE_SENDMAIL_NS=1 exec unshare --mount --propagation private /bin/sh "$0" "$@"
fi
unset PRIVATE_SENDMAIL_NS
# unshare exec'd this shell, so its parent is our caller, in the original namespace.
mine=$(readlink /proc/self/ns/mnt) && outer=$(readlink "/proc/$PPID/ns/mnt") &&
    [ -n "$mine" ] && [ -n "$outer" ] && [ "$mine" != "$outer" ] ||
    die "not in a mount namespace of its own: refusing to mount"

[ $# -ge 1 ] || die "usage: private_sendmail.sh SENDMAIL [--bind SRC DST]... [--tmpfs DIR]... -- CMD..."
sendmail=$1; shift
[ -x "$sendmail" ] || die "$sendmail is not executable"

if [ -e /usr/sbin/sendmail ] || [ -L /usr/sbin/sendmail ]; then
    # A real file is there (the host's MTA): cover it.
    [ -L /usr/sbin/sendmail ] && die "/usr/sbin/sendmail is a symlink; cannot cover it"
    mount --bind "$sendmail" /usr/sbin/sendmail || die "cannot bind $sendmail"
else
    # No MTA on the host: a bind needs an existing target, so /usr/sbin becomes a
    # directory of links to the real entries (kept reachable through a second bind)
    # plus sendmail.
    farm=$(mktemp -d /tmp/private-sbin.XXXXXX)
    mkdir "$farm/real" "$farm/links"
    mount --bind /usr/sbin "$farm/real" || die "cannot bind /usr/sbin"
    for f in "$farm/real"/* "$farm/real"/.[!.]*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        ln -s "$f" "$farm/links/$(basename "$f")"
    done
    ln -s "$sendmail" "$farm/links/sendmail"
    chmod 755 "$farm" "$farm/links"
    mount --bind "$farm/links" /usr/sbin || die "cannot cover /usr/sbin"
fi

while [ $# -gt 0 ]; do
    case $1 in
    --bind) [ $# -ge 3 ] || die "--bind needs SRC DST"
            mount --bind "$2" "$3" || die "cannot bind $2 over $3"; shift 3 ;;
    --tmpfs) [ $# -ge 2 ] || die "--tmpfs needs DIR"
             mount -t tmpfs -o mode=755 tmpfs "$2" || die "cannot mount a tmpfs on $2"; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
    esac
done
[ $# -ge 1 ] || die "no command after --"
exec "$@"
