//! PostgreSQL: Debian's postgresql-15 on the stack image (or the official image where a
//! registry answers), data in `/var/lib/postgresql/data`.

use super::Kind;
use crate::store::Service;

pub struct Postgres;

/// The image's entrypoint: a new data directory is initialised once (superuser password
/// from the environment, password logins from the network, the service's database made),
/// then postgres runs as PID 1 (SIGTERM: a smart shutdown).
const ENTRYPOINT: &str = r#"#!/bin/sh
set -eu
BIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw
    chown postgres /tmp/pw
    as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile=/tmp/pw -E UTF8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f /tmp/pw
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    as_postgres "$BIN/psql" -q -U postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$POSTGRES_DB\"" postgres
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
    echo "berth: initialised $POSTGRES_DB"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA"
"#;

impl Kind for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn about(&self) -> &'static str {
        "Manage PostgreSQL databases"
    }
    fn env_var(&self) -> &'static str {
        "DATABASE"
    }
    fn built_versions(&self) -> &'static [&'static str] {
        &["15"]
    }
    fn official_image(&self, version: &str) -> String {
        format!("postgres:{version}")
    }
    fn install_script(&self) -> String {
        format!(
            "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; apt-get install -y -q --no-install-recommends postgresql-15; rm -rf /var/lib/apt/lists/*; cat > /usr/local/bin/berth-postgres <<'BERTH_EOF'\n{ENTRYPOINT}BERTH_EOF\nchmod 755 /usr/local/bin/berth-postgres"
        )
    }
    fn entrypoint(&self) -> &'static str {
        "/usr/local/bin/berth-postgres"
    }
    fn data_dir(&self) -> &'static str {
        "/var/lib/postgresql/data"
    }
    fn port(&self) -> u16 {
        5432
    }
    fn container_env(&self, service: &Service) -> Vec<String> {
        vec![format!("POSTGRES_PASSWORD={}", service.password), format!("POSTGRES_DB={}", database(service)), "PGDATA=/var/lib/postgresql/data".into()]
    }
    fn url(&self, service: &Service, host: &str, password: &str) -> String {
        format!("postgres://postgres:{password}@{host}:5432/{}", database(service))
    }
    fn ready(&self, service: &Service) -> Vec<String> {
        vec!["pg_isready".into(), "-q".into(), "-h".into(), "127.0.0.1".into(), "-U".into(), "postgres".into(), "-d".into(), database(service)]
    }
    fn connect(&self, service: &Service) -> (Vec<String>, Vec<String>) {
        (vec!["psql".into(), "-U".into(), "postgres".into(), database(service)], Vec::new())
    }
    fn export(&self, service: &Service) -> Option<Vec<String>> {
        Some(vec!["pg_dump".into(), "-Fc".into(), "--no-owner".into(), "-U".into(), "postgres".into(), database(service)])
    }
    fn import(&self, service: &Service) -> Option<Vec<String>> {
        // One transaction: a restore that fails part-way changes nothing.
        Some(vec!["pg_restore".into(), "--clean".into(), "--if-exists".into(), "--single-transaction".into(), "--no-owner".into(), "-U".into(), "postgres".into(), "-d".into(), database(service)])
    }
}

/// The service's database: its name with dashes as underscores (as dokku names it).
pub fn database(service: &Service) -> String {
    service.name.replace('-', "_")
}
