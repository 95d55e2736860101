# A throwaway PostgreSQL server for side-by-side benchmarks, sourced by
# node/bench/holds_vs_postgres.sh and search/bench/postgres.sh.
#
#   pg_server_start EXTRA_CONF     installs Debian's postgresql if missing (needs root),
#                                  initdb's a temp data dir, appends EXTRA_CONF to
#                                  postgresql.conf, starts the server on a free loopback port
#                                  and exports PGHOST/PGPORT/PGUSER/PGDATABASE; sets $pg_bin
#                                  and $pg_data; stops the server and removes the data dir on
#                                  exit.
#   as_server CMD...               runs CMD as the server's user (postgres when root).
# Prints nothing but what it installs; asserts nothing.

pg_find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

pg_install() {
    if [[ -n $(pg_find_bin) && -x $(pg_find_bin)/pg_ctl ]] && command -v pgbench >/dev/null; then
        return
    fi
    printf '%s\n' "installing PostgreSQL (Debian's postgresql package)"
    [[ $(id -u) == 0 ]] || { printf '%s\n' "not root: install postgresql first"; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib
    # The package may start its default cluster; the benchmarks run their own.
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters --no-header | while read -r version cluster _port status _; do
            [[ $status == online ]] && pg_ctlcluster "$version" "$cluster" stop || true
        done
    fi
}

# The server refuses to run as root: as root, run it as the `postgres` user.
if [[ $(id -u) == 0 ]]; then
    as_server() { runuser -u postgres -- "$@"; }
else
    as_server() { "$@"; }
fi

pg_server_stop() {
    as_server "$pg_bin/pg_ctl" -D "$pg_data/db" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_data"
}

pg_server_start() {
    local extra_conf=$1
    pg_install
    pg_bin=$(pg_find_bin)
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 ||
            useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    fi
    local port=54320
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    pg_data=$(mktemp -d /tmp/boxoffice-pg.XXXXXX)
    chmod 755 "$pg_data"
    [[ $(id -u) == 0 ]] && chown postgres: "$pg_data"
    trap pg_server_stop EXIT
    trap 'exit 130' INT TERM
    as_server "$pg_bin/initdb" -D "$pg_data/db" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >/dev/null
    {
        printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
            "$port" "$pg_data"
        printf '%s\n' "$extra_conf"
    } >>"$pg_data/db/postgresql.conf"
    as_server "$pg_bin/pg_ctl" -D "$pg_data/db" -l "$pg_data/server.log" -w start >/dev/null
    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}
