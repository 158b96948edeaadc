#!/usr/bin/env bash
# Makes sure the services Sluice needs are up on 127.0.0.1: PostgreSQL and RabbitMQ, and MariaDB
# (a source the MySQL connector's tests read), tmux (the terminal the demo's test runs in),
# iproute2 (the network namespaces of the spread-over-hosts test) and OpenSSH's server (the
# bastion of the SSH tunnel tests).
# Starts them if installed; on Debian/Ubuntu installs them with apt-get if missing.
# Idempotent: running it again changes nothing. Prints the URLs the fleet will use.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  log "$name did not open port $port within 60s"
  return 1
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || { log "cannot install $*: no apt-get; install it yourself"; exit 1; }
  if [ $apt_updated -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then log "PostgreSQL is up"; return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  local conf="/etc/postgresql/$version/main"
  # Local trust authentication for the fleet's user, as on a developer machine.
  if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  wait_port 5432 PostgreSQL
}

ensure_rabbitmq() {
  if port_open 5672; then log "RabbitMQ is up"; return; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port 5672 RabbitMQ
  # The port opens before the broker accepts connections; wait for it to be fully booted.
  for _ in $(seq 1 60); do
    as_root rabbitmqctl -q await_startup >/dev/null 2>&1 && break
    sleep 1
  done
}

ensure_mariadb() {
  if port_open 3306; then log "MariaDB is up"; return; fi
  command -v mariadbd >/dev/null || command -v mysqld >/dev/null || apt_install mariadb-server
  log "starting MariaDB"
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  (as_root service mariadb start || as_root service mysql start) >/dev/null 2>&1 \
    || as_root sh -c 'mysqld_safe --bind-address=127.0.0.1 >/dev/null 2>&1 &'
  wait_port 3306 MariaDB
  # Local root without a password over TCP, as on a developer machine.
  as_root mysql -uroot -e "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" >/dev/null 2>&1 || true
}

ensure_postgres
ensure_rabbitmq
ensure_mariadb
# The test suite runs `sluice demo` in a terminal multiplexer, as a person would see it.
command -v tmux >/dev/null || apt_install tmux
# The spread-over-hosts test joins network namespaces with veth pairs.
command -v ip >/dev/null || apt_install iproute2
# The SSH tunnel tests start their own OpenSSH server (a bastion) on a loopback port; the
# package's own service is not started.
[ -x /usr/sbin/sshd ] || apt_install openssh-server
command -v ssh-keygen >/dev/null || apt_install openssh-client
command -v pgrep >/dev/null || apt_install procps

echo "SLUICE_DATABASE_URL=${SLUICE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sluice}"
echo "SLUICE_AMQP_URL=${SLUICE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
