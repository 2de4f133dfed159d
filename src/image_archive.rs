//! A `docker save` archive a tenant sends (`git:load-image`), made safe to load: `docker
//! load` moves every tag the archive's `manifest.json` or `repositories` names, whatever it
//! names (`postgres:15`, the stack image, another app's base image, `berth/OTHER:vN`). berth
//! reads what the archive holds first, then writes a copy without any name in it: the image
//! loads by its ID alone, and berth tags it `berth/APP:vN` itself.

use std::io::Read;
use std::path::Path;

/// One image of an archive: its ID (`sha256:…`, its config's digest) and the names the
/// archive gave it (only to choose among several, never loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub id: String,
    pub tags: Vec<String>,
}

/// The largest `manifest.json` berth reads.
const MAX_MANIFEST: u64 = 1 << 20;

#[derive(serde::Deserialize, serde::Serialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Copies the archive at `from` to `to` without the names it gives its images (its
/// `manifest.json` without `RepoTags`, no `repositories`, no OCI `index.json`), and returns
/// the images it holds. Refused when it has no `manifest.json`, or one berth cannot read.
pub fn strip_names(from: &Path, to: &Path) -> Result<Vec<Saved>, String> {
    let unreadable = |e: std::io::Error| format!("the image archive cannot be read: {e}");
    let mut archive = tar::Archive::new(std::fs::File::open(from).map_err(unreadable)?);
    let mut copy = tar::Builder::new(std::fs::File::create(to).map_err(unreadable)?);
    let mut saved = None;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry.path().map_err(unreadable)?.to_string_lossy().trim_start_matches("./").to_string();
        match path.as_str() {
            "repositories" | "index.json" => continue,
            "manifest.json" => {
                if entry.size() > MAX_MANIFEST {
                    return Err("the image archive's manifest.json is over 1 MiB".into());
                }
                let mut text = Vec::new();
                entry.read_to_end(&mut text).map_err(unreadable)?;
                let (images, stripped) = read_manifest(&text)?;
                let mut header = entry.header().clone();
                header.set_size(stripped.len() as u64);
                copy.append_data(&mut header, &path, stripped.as_slice()).map_err(unreadable)?;
                saved = Some(images);
            }
            _ => {
                let mut header = entry.header().clone();
                copy.append_data(&mut header, &path, &mut entry).map_err(unreadable)?;
            }
        }
    }
    copy.into_inner().and_then(|f| f.sync_all()).map_err(unreadable)?;
    saved.ok_or_else(|| "The input is not an image archive (no manifest.json): docker save IMAGE | ssh … git:load-image APP".to_string())
}

/// The images a `manifest.json` lists, and the same manifest without their names. Pure.
fn read_manifest(text: &[u8]) -> Result<(Vec<Saved>, Vec<u8>), String> {
    let mut entries: Vec<Entry> = serde_json::from_slice(text).map_err(|e| format!("the image archive's manifest.json cannot be read: {e}"))?;
    let mut images = Vec::new();
    for entry in &mut entries {
        // `<hex>.json` (docker save) or `blobs/sha256/<hex>` (OCI layout).
        let file = entry.config.rsplit('/').next().unwrap_or_default();
        let hex = file.strip_suffix(".json").unwrap_or(file);
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("the image archive's manifest.json names a config berth cannot read: {}", crate::validate::quoted(&entry.config)));
        }
        images.push(Saved { id: format!("sha256:{}", hex.to_ascii_lowercase()), tags: entry.repo_tags.take().unwrap_or_default() });
    }
    let stripped = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    Ok((images, stripped))
}

/// Which image of an archive to deploy: the one `wanted` names (with or without a tag;
/// `latest` if none), else the only one. Pure.
pub fn choose<'a>(images: &'a [Saved], wanted: Option<&str>) -> Result<&'a Saved, String> {
    match (wanted, images) {
        (Some(name), _) => {
            let full = if name.rsplit_once(':').is_some_and(|(_, tag)| !tag.contains('/')) { name.to_string() } else { format!("{name}:latest") };
            images.iter().find(|i| i.tags.contains(&full) || i.id == name).ok_or_else(|| {
                let held: Vec<String> = images.iter().flat_map(|i| i.tags.clone()).collect();
                format!("The archive does not hold {name} (it holds: {})", held.join(", "))
            })
        }
        (None, [only]) => Ok(only),
        (None, []) => Err("The archive holds no image".into()),
        (None, many) => {
            let held: Vec<String> = many.iter().map(|i| i.tags.first().cloned().unwrap_or_else(|| i.id.clone())).collect();
            Err(format!("The archive holds several images ({}): name the one to deploy", held.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2a6b1c9d0e4f2a6b1c9d0e4f2a6b1c9d0e4f2a6b1c9d0e4f2a6b1c9d0e1234";

    fn archive(dir: &Path, manifest: &str, repositories: Option<&str>) -> std::path::PathBuf {
        let path = dir.join("in.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add(&format!("{ID}.json"), b"{}");
        add("layer/layer.tar", b"layer bytes");
        if let Some(r) = repositories {
            add("repositories", r.as_bytes());
        }
        add("manifest.json", manifest.as_bytes());
        b.finish().unwrap();
        path
    }

    fn names(path: &Path) -> Vec<(String, String)> {
        let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                (e.path().unwrap().display().to_string(), text)
            })
            .collect()
    }

    #[test]
    fn an_archive_loads_without_the_names_it_gives() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(r#"[{{"Config":"{ID}.json","RepoTags":["postgres:15","berth/other:v2"],"Layers":["layer/layer.tar"]}}]"#);
        let from = archive(dir.path(), &manifest, Some(r#"{"postgres":{"15":"abc"}}"#));
        let to = dir.path().join("out.tar");
        let saved = strip_names(&from, &to).unwrap();
        assert_eq!(saved, vec![Saved { id: format!("sha256:{ID}"), tags: vec!["postgres:15".into(), "berth/other:v2".into()] }]);
        let entries = names(&to);
        assert!(!entries.iter().any(|(n, _)| n == "repositories"), "{entries:?}");
        let (_, manifest) = entries.iter().find(|(n, _)| n == "manifest.json").unwrap();
        assert!(!manifest.contains("postgres") && !manifest.contains("berth/other"), "{manifest}");
        assert!(manifest.contains("layer/layer.tar") && manifest.contains(&format!("{ID}.json")), "{manifest}");
        assert!(entries.iter().any(|(n, t)| n == "layer/layer.tar" && t == "layer bytes"));
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("out.tar");
        for manifest in ["not json", r#"[{"Config":"../../etc/passwd","RepoTags":[]}]"#, r#"{"Config":"x"}"#] {
            let from = archive(dir.path(), manifest, None);
            assert!(strip_names(&from, &to).is_err(), "{manifest}");
        }
        std::fs::write(dir.path().join("plain.tar"), b"").unwrap();
        assert!(strip_names(&dir.path().join("plain.tar"), &to).unwrap_err().contains("no manifest.json"));
    }

    #[test]
    fn the_image_to_deploy_is_named_or_the_only_one() {
        let one = Saved { id: "sha256:1".into(), tags: vec!["ci/app:one".into()] };
        let two = Saved { id: "sha256:2".into(), tags: vec!["ci/app:latest".into()] };
        let both = [one.clone(), two.clone()];
        assert_eq!(choose(&both, Some("ci/app:one")).unwrap(), &one);
        assert_eq!(choose(&both, Some("ci/app")).unwrap(), &two);
        assert!(choose(&both, None).unwrap_err().contains("several images"));
        assert!(choose(&both, Some("ci/app:three")).unwrap_err().contains("does not hold"));
        assert_eq!(choose(std::slice::from_ref(&one), None).unwrap(), &one);
        assert!(choose(&[], None).is_err());
    }
}
