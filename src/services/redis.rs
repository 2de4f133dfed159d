//! Redis: Debian's redis-server 7 on the stack image (or the official image where a
//! registry answers), append-only data in `/data`.

use super::Kind;
use crate::store::Service;

pub struct Redis;

/// The image's entrypoint: redis-server as the redis user, password from the environment.
const ENTRYPOINT: &str = r#"#!/bin/sh
set -eu
mkdir -p /data
chown redis:redis /data
exec setpriv --reuid=redis --regid=redis --init-groups redis-server --bind 0.0.0.0 --protected-mode no --dir /data --appendonly yes --requirepass "$REDIS_PASSWORD"
"#;

impl Kind for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn about(&self) -> &'static str {
        "Manage Redis services"
    }
    fn env_var(&self) -> &'static str {
        "REDIS"
    }
    fn built_versions(&self) -> &'static [&'static str] {
        &["7"]
    }
    fn official_image(&self, version: &str) -> String {
        format!("redis:{version}")
    }
    fn install_script(&self) -> String {
        format!(
            "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; apt-get install -y -q --no-install-recommends redis-server; rm -rf /var/lib/apt/lists/*; cat > /usr/local/bin/berth-redis <<'BERTH_EOF'\n{ENTRYPOINT}BERTH_EOF\nchmod 755 /usr/local/bin/berth-redis"
        )
    }
    fn entrypoint(&self) -> &'static str {
        "/usr/local/bin/berth-redis"
    }
    fn official_cmd(&self) -> Option<Vec<String>> {
        let script = r#"exec redis-server --dir /data --appendonly yes --requirepass "$REDIS_PASSWORD""#;
        Some(vec!["sh".into(), "-c".into(), script.into()])
    }
    fn data_dir(&self) -> &'static str {
        "/data"
    }
    fn port(&self) -> u16 {
        6379
    }
    fn container_env(&self, service: &Service) -> Vec<String> {
        vec![format!("REDIS_PASSWORD={}", service.password)]
    }
    fn url(&self, _service: &Service, host: &str, password: &str) -> String {
        format!("redis://:{password}@{host}:6379")
    }
    fn ready(&self, _service: &Service) -> Vec<String> {
        vec!["sh".into(), "-c".into(), r#"REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 ping | grep -q PONG"#.into()]
    }
    fn connect(&self, service: &Service) -> (Vec<String>, Vec<String>) {
        (vec!["redis-cli".into(), "-h".into(), "127.0.0.1".into()], vec![format!("REDISCLI_AUTH={}", service.password)])
    }
}
