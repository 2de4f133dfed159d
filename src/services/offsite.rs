//! Backups off the machine: a service's dumps uploaded to an S3-compatible bucket
//! (`KIND:backup-set-target NAME s3://BUCKET/PREFIX`), through the object_store crate. An
//! upload is streamed from the dump's file in parts (never the whole dump in memory); the
//! objects are `PREFIX/NAME-YYYYmmdd-HHMMSS.dump`, listed, fetched and pruned by that name.
//! With a passphrase (`KIND:backup-set-encryption`) what is uploaded is encrypted in the age
//! format (scrypt recipient: `age -d` opens it with the passphrase), `….dump.age`.

use std::path::Path;

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::BackupTarget;

/// The part of a file read (and uploaded) at once.
const PART: usize = 8 * 1024 * 1024;

/// A backup where the target keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// Its file name (`NAME-YYYYmmdd-HHMMSS.dump`): what `KIND:restore` takes.
    pub name: String,
    pub size: u64,
    /// RFC 3339.
    pub modified: String,
}

/// `s3://BUCKET/PREFIX` → (bucket, prefix without slashes at its ends). Pure.
pub fn bucket_and_prefix(url: &str) -> Result<(String, String), String> {
    let invalid = |why: &str| format!("Invalid backup target {}: {why}", crate::validate::quoted(url));
    let rest = url.strip_prefix("s3://").ok_or_else(|| invalid("it is s3://BUCKET or s3://BUCKET/PREFIX"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3's bucket names: 3–63 of lowercase letters, digits, dots and dashes.
    if !(3..=63).contains(&bucket.len()) || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("the bucket is 3 to 63 lowercase letters, digits, dots and dashes"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.len() > 512 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)) || prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
        return Err(invalid("the prefix is letters, digits, -, _, . and / between them"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// An endpoint URL: http(s), a host, nothing after it but a path. Pure.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let invalid = |why: &str| format!("Invalid endpoint {}: {why}", crate::validate::quoted(endpoint));
    let url = url::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !url.username().is_empty() || url.query().is_some() {
        return Err(invalid("an http(s) URL of the S3-compatible service, such as https://s3.example.com"));
    }
    Ok(())
}

fn client(target: &BackupTarget) -> Result<(AmazonS3, String), String> {
    let (bucket, prefix) = bucket_and_prefix(&target.url)?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_region(target.region.clone().unwrap_or_else(|| "us-east-1".into()))
        .with_access_key_id(&target.access_key_id)
        .with_secret_access_key(&target.secret_access_key);
    if let Some(endpoint) = &target.endpoint {
        // Other S3 services take BUCKET in the path more often than as a host name.
        builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false).with_allow_http(endpoint.starts_with("http://"));
    }
    Ok((builder.build().map_err(|e| e.to_string())?, prefix))
}

fn key(prefix: &str, name: &str) -> Key {
    if prefix.is_empty() { Key::from(name) } else { Key::from(format!("{prefix}/{name}")) }
}

/// Uploads a dump file under its file name (encrypted first, as `NAME.age`, with a
/// passphrase), in parts as it is read.
pub async fn upload(target: &BackupTarget, file: &Path, passphrase: Option<&str>) -> Result<(), String> {
    let Some(passphrase) = passphrase else { return upload_file(target, file).await };
    let sealed = Removed(file.with_extension("dump.age"));
    let (from, to, pass) = (file.to_path_buf(), sealed.0.clone(), passphrase.to_string());
    tokio::task::spawn_blocking(move || encrypt(&from, &to, &pass)).await.map_err(|e| e.to_string())??;
    upload_file(target, &sealed.0).await
}

/// A file removed when dropped.
pub struct Removed(pub std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `from` encrypted into `to` (a new file, 0600) in the age format with `passphrase`.
fn encrypt(from: &Path, to: &Path, passphrase: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut input = std::fs::File::open(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let output = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let encryptor = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(passphrase.to_string()));
    let mut writer = encryptor.wrap_output(std::io::BufWriter::new(output)).map_err(|e| format!("cannot encrypt: {e}"))?;
    std::io::copy(&mut input, &mut writer).map_err(|e| format!("cannot encrypt {}: {e}", from.display()))?;
    let mut out = writer.finish().map_err(|e| format!("cannot encrypt: {e}"))?;
    std::io::Write::flush(&mut out).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    out.get_ref().sync_all().map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// `from` (age, encrypted with a passphrase) decrypted into `to` (a new file, 0600).
pub fn decrypt(from: &Path, to: &Path, passphrase: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let input = std::io::BufReader::new(std::fs::File::open(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?);
    let decryptor = age::Decryptor::new_buffered(input).map_err(|e| format!("the backup is not an age file berth can open: {e}"))?;
    let identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_string()));
    let mut reader = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)).map_err(|e| format!("cannot decrypt the backup (is the passphrase the one it was made with?): {e}"))?;
    let mut output = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    std::io::copy(&mut reader, &mut output).map_err(|e| format!("cannot decrypt the backup: {e}"))?;
    output.sync_all().map_err(|e| format!("cannot write {}: {e}", to.display()))
}

async fn upload_file(target: &BackupTarget, file: &Path) -> Result<(), String> {
    let (s3, prefix) = client(target)?;
    let name = file.file_name().and_then(|n| n.to_str()).ok_or("a dump file has a name")?;
    let at = format!("{}/{name}", target.url.trim_end_matches('/'));
    let fail = |e: &dyn std::fmt::Display| format!("the upload to {at} failed: {}", crate::one_line(&e.to_string()));
    let mut reader = tokio::fs::File::open(file).await.map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let upload = s3.put_multipart(&key(&prefix, name)).await.map_err(|e| fail(&e))?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
    let mut buf = vec![0u8; PART];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(format!("cannot read {}: {e}", file.display()));
            }
        };
        if n == 0 {
            break;
        }
        // At most two parts in flight: memory stays bounded however large the dump.
        if let Err(e) = writer.wait_for_capacity(2).await {
            let _ = writer.abort().await;
            return Err(fail(&e));
        }
        writer.write(&buf[..n]);
    }
    // A failed upload is aborted: no incomplete one is left in the bucket (where it would
    // still be billed). Once every part is in, `finish` aborts if completing fails.
    if let Err(e) = writer.wait_for_capacity(0).await {
        let _ = writer.abort().await;
        return Err(fail(&e));
    }
    writer.finish().await.map(|_| ()).map_err(|e| fail(&e))
}

/// The target's backups of service `name`, oldest first.
pub async fn list(target: &BackupTarget, name: &str) -> Result<Vec<Remote>, String> {
    let (s3, prefix) = client(target)?;
    let under = (!prefix.is_empty()).then(|| Key::from(prefix.clone()));
    // The prefix's own objects, not what lies deeper under it.
    let listed = s3.list_with_delimiter(under.as_ref()).await.map_err(|e| format!("cannot list {}: {}", target.url, crate::one_line(&e.to_string())))?;
    let mut found = Vec::new();
    for object in listed.objects {
        let Some(file) = object.location.filename() else { continue };
        if is_dump_of(file, name) && object.location.as_ref() == key(&prefix, file).as_ref() {
            found.push(Remote { name: file.to_string(), size: object.size, modified: object.last_modified.to_rfc3339() });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Whether `file` is one of service `name`'s dumps (`NAME-YYYYmmdd-HHMMSS.dump`, or
/// `.dump.age` encrypted). Pure.
pub fn is_dump_of(file: &str, name: &str) -> bool {
    let file = file.strip_suffix(".age").unwrap_or(file);
    file.strip_prefix(name).and_then(|r| r.strip_prefix('-')).and_then(|r| r.strip_suffix(".dump")).is_some_and(|stamp| stamp.len() == 15 && stamp.bytes().enumerate().all(|(i, b)| if i == 8 { b == b'-' } else { b.is_ascii_digit() }))
}

/// Removes the oldest of the target's backups of `name` beyond `keep`.
pub async fn prune(target: &BackupTarget, name: &str, keep: u32) -> Result<usize, String> {
    let backups = list(target, name).await?;
    let (s3, prefix) = client(target)?;
    let excess = backups.len().saturating_sub(keep.max(1) as usize);
    for old in &backups[..excess] {
        s3.delete(&key(&prefix, &old.name)).await.map_err(|e| format!("cannot remove {}/{}: {}", target.url, old.name, crate::one_line(&e.to_string())))?;
    }
    Ok(excess)
}

/// Downloads a backup into `to` (a new file, 0600), as it arrives.
pub async fn download(target: &BackupTarget, name: &str, to: &Path) -> Result<(), String> {
    let service = name.rsplitn(3, '-').nth(2).unwrap_or(name);
    use std::os::unix::fs::OpenOptionsExt;
    let (s3, prefix) = client(target)?;
    let at = format!("{}/{name}", target.url.trim_end_matches('/'));
    let got = s3.get(&key(&prefix, name)).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => format!("{at} does not exist (postgres:backups {service} lists the backups)"),
        e => format!("cannot download {at}: {}", crate::one_line(&e.to_string())),
    })?;
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("cannot download {at}: {}", crate::one_line(&e.to_string())))?;
        file.write_all(&chunk).await.map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    file.sync_all().await.map_err(|e| format!("cannot write {}: {e}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_and_bad_ones_refused() {
        assert_eq!(bucket_and_prefix("s3://my-backups").unwrap(), ("my-backups".into(), "".into()));
        assert_eq!(bucket_and_prefix("s3://my-backups/db/prod/").unwrap(), ("my-backups".into(), "db/prod".into()));
        for bad in ["http://b/x", "s3://UPPER", "s3://ab", "s3://bucket/../x", "s3://bucket/a//b", "s3://bucket/a b", "s3://-bucket"] {
            let e = bucket_and_prefix(bad).unwrap_err();
            assert!(e.starts_with("Invalid backup target"), "{bad}: {e}");
        }
        assert!(check_endpoint("http://127.0.0.1:9000").is_ok());
        assert!(check_endpoint("https://s3.eu.example.com/").is_ok());
        for bad in ["ftp://x", "s3.example.com", "https://u:p@x.example.com", "https://x.example.com/?a=b"] {
            assert!(check_endpoint(bad).unwrap_err().starts_with("Invalid endpoint"), "{bad}");
        }
    }

    #[test]
    fn a_services_dumps_are_known_by_name() {
        assert!(is_dump_of("db-20261206-040000.dump", "db"));
        assert!(!is_dump_of("db-two-20261206-040000.dump", "db"));
        assert!(is_dump_of("db-two-20261206-040000.dump", "db-two"));
        assert!(!is_dump_of("db-20261206-040000.dump.tmp", "db"));
        assert!(!is_dump_of("db-2026120-0400000.dump", "db"));
        assert!(!is_dump_of("db.dump", "db"));
        assert!(is_dump_of("db-20261206-040000.dump.age", "db"));
        assert!(!is_dump_of("db-20261206-040000.dump.age.age", "db"));
    }

    #[test]
    fn an_encrypted_dump_opens_with_its_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("db-20261206-040000.dump");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&plain, &bytes).unwrap();
        let sealed = dir.path().join("sealed.age");
        encrypt(&plain, &sealed, "correct horse").unwrap();
        let text = std::fs::read(&sealed).unwrap();
        assert!(text.starts_with(b"age-encryption.org/v1\n-> scrypt "), "the age format with a passphrase");
        assert!(!text.windows(64).any(|w| w == &bytes[1000..1064]), "encrypted");
        let wrong = decrypt(&sealed, &dir.path().join("wrong"), "battery staple").unwrap_err();
        assert!(wrong.contains("passphrase"), "{wrong}");
        decrypt(&sealed, &dir.path().join("back"), "correct horse").unwrap();
        assert_eq!(std::fs::read(dir.path().join("back")).unwrap(), bytes);
    }
}
