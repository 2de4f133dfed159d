//! Preview apps: with `previews:enable APP`, a push of any branch but the deploy branch
//! builds that commit as the app `APP--SLUG`, a real app marked as APP's preview, served one
//! label under APP's name. Deleting the branch destroys it; so does the daemon when it was
//! not pushed within the TTL.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::store::{AppConfig, PreviewOf};

/// The app a branch's preview is: `PARENT--SLUG`, the slug the branch lowercased, runs of
/// other characters than a-z0-9 as one `-`, trimmed; cut, with 6 hex characters of a hash
/// of the branch, to keep the name within 63 characters. Pure.
pub fn app_name(parent: &str, branch: &str) -> String {
    format!("{parent}--{}", slug(parent, branch))
}

/// The branch's label in names: see [`app_name`]. Pure.
pub fn slug(parent: &str, branch: &str) -> String {
    let mut slug = String::new();
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut slug = slug.trim_matches('-').to_string();
    if slug.is_empty() {
        slug = "branch".into();
    }
    let room = 63usize.saturating_sub(parent.len() + 2);
    if slug.len() > room {
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(branch.as_bytes()).iter().take(3).map(|b| format!("{b:02x}")).collect();
        let keep = room.saturating_sub(7);
        slug = format!("{}-{hash}", slug[..keep].trim_end_matches('-'));
    }
    slug
}

/// Where a preview is served: `SLUG.PARENT.<global domain>` with a global domain, else
/// `SLUG.<the parent's first domain>`. Pure.
pub fn domain(parent: &str, slug: &str, parent_domains: &[String], global_domains: &[String]) -> Option<String> {
    base_domain(parent, parent_domains, global_domains).map(|base| format!("{slug}.{base}"))
}

/// What every preview's name of `parent` ends in (`PARENT.<global domain>`, or the parent's
/// first domain): `*.` of it covers them all. Pure.
pub fn base_domain(parent: &str, parent_domains: &[String], global_domains: &[String]) -> Option<String> {
    match (global_domains.first(), parent_domains.first()) {
        (Some(global), _) => Some(format!("{parent}.{global}")),
        (None, Some(first)) => Some(first.trim_start_matches("*.").to_string()),
        (None, None) => None,
    }
}

/// A preview's config from its parent's: the parent's env minus excluded keys (and the
/// URLs of linked services unless previews get them), plus the preview overrides. Pure.
pub fn env(parent: &AppConfig, linked_vars: &[String]) -> BTreeMap<String, String> {
    let settings = &parent.previews;
    let mut env: BTreeMap<String, String> = parent
        .env
        .iter()
        .filter(|(k, _)| !settings.config_exclude.contains(k) && (settings.link_services || !linked_vars.contains(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(settings.config.clone());
    env
}

/// Every preview of `parent`: (app, its preview marker).
pub fn of(engine: &Engine, parent: &str) -> Vec<(String, PreviewOf)> {
    engine.store.previews_of(parent)
}

/// The env vars through which `app`'s linked services reach it.
pub fn linked_vars(engine: &Engine, app: &str) -> Vec<String> {
    let mut vars = Vec::new();
    for kind in crate::services::KINDS {
        for name in engine.store.list_services(kind.name()).unwrap_or_default() {
            if let Ok(Some(service)) = engine.store.load_service(kind.name(), &name)
                && let Some(var) = service.links.get(app)
            {
                vars.push(var.clone());
            }
        }
    }
    vars
}

/// Parses a TTL: `7d`, `12h`, `30m`. Seconds.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let bad = || format!("Invalid ttl {}: a number of days, hours or minutes, e.g. 7d, 12h, 30m", crate::validate::quoted(text));
    let Some((at, _)) = text.char_indices().last() else { return Err(bad()) };
    let (number, unit) = text.split_at(at);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        _ => return Err(bad()),
    };
    if secs == 0 || secs > 365 * 86_400 { Err(bad()) } else { Ok(secs) }
}

/// How a TTL reads.
pub fn show_ttl(secs: u64) -> String {
    if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3_600) {
        format!("{}h", secs / 3_600)
    } else {
        format!("{}m", secs / 60)
    }
}

/// The scheduler's tick: previews not pushed within their parent's TTL are destroyed.
pub async fn expire(engine: &std::sync::Arc<Engine>) {
    let now = crate::unix_now();
    for app in engine.store.list_apps().unwrap_or_default() {
        let Ok(config) = engine.store.load_app(&app) else { continue };
        let Some(of) = config.preview_of else { continue };
        let ttl = engine.store.load_app(&of.parent).ok().and_then(|p| p.previews.ttl).unwrap_or(crate::store::PreviewSettings::DEFAULT_TTL);
        if now.saturating_sub(of.last_push) < ttl {
            continue;
        }
        match crate::destroy::destroy_preview(engine, &app).await {
            Ok(()) => tracing::info!(app, "preview expired: destroyed"),
            Err(e) => tracing::error!(app, "cannot destroy an expired preview: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_map_to_app_names_and_dns_labels() {
        assert_eq!(app_name("myapp", "feature-login"), "myapp--feature-login");
        assert_eq!(app_name("myapp", "feature/Login_2"), "myapp--feature-login-2");
        assert_eq!(app_name("myapp", "--Weird..Branch--"), "myapp--weird-branch");
        assert_eq!(app_name("myapp", "___"), "myapp--branch");
        let long = "a".repeat(100);
        let name = app_name("myapp", &long);
        assert!(name.len() <= 63 && crate::validate::app_name(&name).is_ok(), "{name}");
        assert_ne!(app_name("myapp", &format!("{long}x")), name, "long branches differ by their hash");
        assert_eq!(app_name("myapp", &long), name, "deterministic");
        assert_eq!(domain("myapp", "f", &["myapp.com".into()], &["example.test".into()]).unwrap(), "f.myapp.example.test");
        assert_eq!(domain("myapp", "f", &["*.myapp.com".into()], &[]).unwrap(), "f.myapp.com");
        assert_eq!(domain("myapp", "f", &[], &[]), None);
        // The longest name still makes a container host name.
        assert!(crate::runtime::hostname(&name, "web", 1).len() <= 63);
    }

    #[test]
    fn previews_get_the_parents_config_minus_exclusions_plus_overrides() {
        let mut parent = AppConfig::new();
        parent.env = [("A", "1"), ("SECRET", "s"), ("DATABASE_URL", "postgres://x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parent.previews.config_exclude = vec!["SECRET".into()];
        parent.previews.config = [("A".to_string(), "preview".to_string())].into();
        let env = env(&parent, &["DATABASE_URL".into()]);
        assert_eq!(env.get("A").map(String::as_str), Some("preview"));
        assert!(!env.contains_key("SECRET") && !env.contains_key("DATABASE_URL"));
        parent.previews.link_services = true;
        assert!(super::env(&parent, &["DATABASE_URL".into()]).contains_key("DATABASE_URL"));
        assert_eq!(parse_ttl("7d").unwrap(), 604_800);
        assert_eq!(parse_ttl("2m").unwrap(), 120);
        for bad in ["", "7", "0d", "x", "7w", "-1d", "7é", "7日"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
