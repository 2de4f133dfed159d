//! Services' state: `<root>/services/<kind>/<name>.toml` (0600: it holds the password).

use serde::{Deserialize, Serialize};

/// One database service (postgres, redis): what berth made, and which apps use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub kind: String,
    pub name: String,
    /// The image its container runs (`berth/postgres:15`, or an official one).
    pub image: String,
    pub version: String,
    /// Generated at create; reaches apps only through their config.
    pub password: String,
    pub created_at: u64,
    /// App → the env var the service's URL is in (`DATABASE_URL`).
    #[serde(default)]
    pub links: std::collections::BTreeMap<String, String>,
}
