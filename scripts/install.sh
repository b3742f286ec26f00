#!/usr/bin/env bash
# install.sh - install Tern as a system service on Debian 12.
#
#   scripts/install.sh           build (if needed) and install everything below
#   scripts/install.sh --user    only create the `tern` system user, when missing
#
# Runs as root and is safe to run again: it never overwrites a configuration,
# aliases or user store that exists, and never starts or enables the service.
#
#   /usr/sbin/tern                      the program (from build/, built when missing)
#   /etc/tern/tern.conf                 from packaging/tern.conf, when missing
#   /etc/tern/aliases, /etc/tern/users  empty, when missing (users: root:tern 0640)
#   /etc/tern/dkim/                     DKIM keys (root 0700)
#   /var/spool/tern/, /var/mail/tern/   spool and Maildirs, owned by tern
#   /etc/systemd/system/tern.service    from packaging/tern.service
#   /usr/share/man/man8/tern.8, man5/tern.conf.5
#
# The `tern` user (a system user with no home and no shell) is who the server
# runs as once it has bound its ports: see docs/lifecycle.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ "$(id -u)" -ne 0 ]; then
	echo "install: run as root (sudo $0 $*)" >&2
	exit 1
fi

# The system user the server switches to (run_user = tern).
ensure_user() {
	if getent passwd tern >/dev/null; then
		return
	fi
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tern
	echo "install: created the system user tern"
}

case "${1:-}" in
--user)
	ensure_user
	exit 0
	;;
"") ;;
*)
	echo "usage: $0 [--user]" >&2
	exit 2
	;;
esac

ensure_user

if [ ! -x build/tern ]; then
	if [ ! -f build/build.ninja ]; then
		meson setup build
	fi
	ninja -C build tern
fi

install -D -m 0755 build/tern /usr/sbin/tern

install -d -m 0755 /etc/tern
install -d -m 0700 /etc/tern/dkim
if [ ! -e /etc/tern/tern.conf ]; then
	install -m 0644 packaging/tern.conf /etc/tern/tern.conf
	echo "install: wrote /etc/tern/tern.conf: set hostname, local_domains and mailboxes"
fi
if [ ! -e /etc/tern/aliases ]; then
	install -m 0644 /dev/null /etc/tern/aliases
fi
# The user store holds password hashes: readable by the server after it has
# become tern (SIGHUP and changes reload it), by nobody else. `tern user`
# keeps the mode and owner when it rewrites the file.
if [ ! -e /etc/tern/users ]; then
	install -m 0640 -o root -g tern /dev/null /etc/tern/users
fi

install -d -m 0700 -o tern -g tern /var/spool/tern
install -d -m 0750 -o tern -g tern /var/mail/tern

install -D -m 0644 packaging/tern.service /etc/systemd/system/tern.service
for page in man/tern.8 man/tern.conf.5; do
	section=${page##*.}
	install -D -m 0644 "$page" "/usr/share/man/man$section/$(basename "$page")"
done

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	echo "install: done; edit /etc/tern/tern.conf, then: systemctl enable --now tern"
else
	echo "install: done (systemd is not running here: start with /usr/sbin/tern serve)"
fi
