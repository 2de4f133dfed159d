//! Services' state: `<root>/services/<kind>/<name>.toml` (0600: it holds the password).

use serde::{Deserialize, Serialize};

/// One database service (postgres, redis): what berth made, and which apps use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub kind: String,
    pub name: String,
    /// The image its container runs, by name (`berth/postgres:15`, or an official one).
    pub image: String,
    /// What that name was when berth chose it: the ID of the image berth built, or the
    /// registry digest of an official one (`postgres@sha256:…`). The container runs this,
    /// never the name, which anything that can tag on the engine could move. None in state
    /// written before berth pinned images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub version: String,
    /// Generated at create; reaches apps only through their config.
    pub password: String,
    pub created_at: u64,
    /// App → the env var the service's URL is in (`DATABASE_URL`).
    #[serde(default)]
    pub links: std::collections::BTreeMap<String, String>,
    /// `KIND:backup-schedule`: dumps under `<root>/backups/KIND/NAME/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSchedule>,
    /// `KIND:backup-set-target`: where its dumps are uploaded as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<BackupTarget>,
    /// `KIND:backup-set-encryption`: every passphrase given, the newest last (uploads are
    /// encrypted with it, age; a restore tries each, so earlier uploads still open).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_passphrases: Vec<String>,
    /// Uploads are encrypted (`backup-unset-encryption` turns it off, keeping the passphrases).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup_encrypt: bool,
}

/// An S3-compatible bucket a service's dumps go to, with its credentials (the service's
/// file is 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupTarget {
    /// `s3://BUCKET/PREFIX`.
    pub url: String,
    /// Another S3-compatible service than AWS (`https://s3.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// When a service is dumped, and how many dumps are kept (the oldest go).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSchedule {
    pub schedule: String,
    pub keep: u32,
}
