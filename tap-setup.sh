#!/usr/bin/env bash
# Creates (or removes) a persistent TAP device for tapstack, owned by a normal user, so that
# `tapstack serve --tap tap0` runs without root afterwards.
#
#   sudo ./tap-setup.sh                 # tap0 for the user who ran sudo: 192.168.69.100/24, fe80::100, fdaa::100
#   sudo ./tap-setup.sh --name tap1 --user alice
#   sudo ./tap-setup.sh --down          # remove it again
#
# Idempotent: running it twice changes nothing the second time. For your own machine only; tapstack's
# tests never run it (they make their own network namespaces).
set -euo pipefail

name=tap0
user="${SUDO_USER:-}"
down=0
v4=192.168.69.100/24
v6=fdaa::100/64
ll=fe80::100/64

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "options: --name NAME (default tap0), --user USER (default \$SUDO_USER), --down, --help"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="${2:?--name needs a value}"; shift 2 ;;
    --user) user="${2:?--user needs a value}"; shift 2 ;;
    --down) down=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "tap-setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ "${#name}" -gt 15 ] || [[ ! "$name" =~ ^[A-Za-z0-9_.-]+$ ]]; then
  echo "tap-setup.sh: '$name' is not a valid interface name (1-15 letters, digits, _ . -)" >&2
  exit 2
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "tap-setup.sh: creating a TAP device needs root. Please run: sudo $0 $*" >&2
  exit 1
fi

if ! command -v ip >/dev/null 2>&1; then
  echo "tap-setup.sh: the 'ip' command is missing: install iproute2 (apt-get install iproute2)" >&2
  exit 1
fi

if [ "$down" -eq 1 ]; then
  if ip link show dev "$name" >/dev/null 2>&1; then
    ip tuntap del dev "$name" mode tap
    echo "removed $name"
  else
    echo "$name does not exist; nothing to remove"
  fi
  exit 0
fi

if [ -z "$user" ] || [ "$user" = root ]; then
  user=root
  echo "note: $name will belong to root; run with sudo from your own account (or pass --user NAME) so tapstack can run without root"
fi
if ! id "$user" >/dev/null 2>&1; then
  echo "tap-setup.sh: no such user '$user'" >&2
  exit 2
fi

[ -e /dev/net/tun ] || modprobe tun 2>/dev/null || true
if [ ! -e /dev/net/tun ]; then
  echo "tap-setup.sh: /dev/net/tun is missing and the tun module could not be loaded" >&2
  exit 1
fi

if ip link show dev "$name" >/dev/null 2>&1; then
  details=$(ip -d link show dev "$name")
  if ! grep -q "tun type tap" <<<"$details"; then
    echo "tap-setup.sh: $name exists but is not a TAP device; pick another --name" >&2
    exit 1
  fi
  echo "$name exists already"
else
  ip tuntap add dev "$name" mode tap user "$user"
  echo "created $name for user $user"
fi

add_addr() {
  local have
  have=$(ip addr show dev "$name")
  if grep -q " ${1} " <<<"$have"; then
    return
  fi
  ip addr add "$1" dev "$name" ${2:-}
}
add_addr "$v4"
add_addr "$v6" nodad
add_addr "$ll" nodad
# The kernel queues frames towards tapstack in this queue while tapstack is busy (one loop turn, a
# burst of work); what does not fit is dropped, out of tapstack's sight. The default of 1000 frames
# overflowed under bursts of SYNs (512 connects in flight: up to 3,200 SYNs dropped per 50,000
# connections, each client then waiting for the kernel's 1 s / 3 s SYN retry). A frame costs memory
# only while it is queued, so a deeper queue is cheap: 10000 holds such a burst. tapstack shows the
# device's drops (tap_tx_dropped in its stats line and /netstat.json) and warns when they grow.
txqueuelen=10000
ip link set dev "$name" txqueuelen "$txqueuelen"
ip link set dev "$name" up

echo "$name is up: host side $v4, $v6, $ll; txqueuelen $txqueuelen"
echo "now run: cargo run --release -- serve --tap $name"
echo "then:    ping 192.168.69.1; nc 192.168.69.1 7"
