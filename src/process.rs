//! Process types and the formation. Pure: no IO.
//!
//! A release declares its process types (the Procfile's, plus buildpack defaults); the app's
//! formation says how many containers of each type run (`ps:scale`). `web` gets the proxy,
//! the others run without it, and `release` is not a process: it runs once per deploy.

use crate::validate::Invalid;
use std::collections::BTreeMap;


/// The Procfile type that runs once before the swap instead of as a process.
pub const RELEASE_TYPE: &str = "release";
/// The type the proxy routes to.
pub const WEB: &str = "web";
/// The most containers of one type `ps:scale` accepts.
pub const MAX_SCALE: u32 = 100;

/// Parses a Procfile: `type: command` lines; blank lines and `#` comments are skipped.
pub fn parse_procfile(text: &str) -> Result<BTreeMap<String, String>, Invalid> {
    if text.len() > MAX_PROCFILE {
        return Err(Invalid(format!("The Procfile is {} KiB: berth takes at most 64 KiB", text.len() / 1024)));
    }
    let mut types = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || Invalid(format!("Procfile line {} is not `type: command`: {}", n + 1, crate::validate::quoted(line)));
        let (name, command) = line.split_once(':').ok_or_else(bad)?;
        let (name, command) = (name.trim(), command.trim());
        if command.is_empty() || crate::validate::process_type(name).is_err() {
            return Err(bad());
        }
        if types.insert(name.to_string(), command.to_string()).is_some() {
            return Err(Invalid(format!("Procfile names the process type {name:?} twice")));
        }
        if types.len() > MAX_PROCESS_TYPES {
            return Err(Invalid(format!("The Procfile names more than {MAX_PROCESS_TYPES} process types")));
        }
    }
    Ok(types)
}

/// What a Procfile may hold: every type is recorded in each release.
pub const MAX_PROCFILE: usize = 64 * 1024;
pub const MAX_PROCESS_TYPES: usize = 50;

/// Parses `berth-launch`'s process list (`type: command` lines written by the buildpack
/// driver); lines that do not parse are skipped, the first of a type wins.
pub fn parse_process_list(text: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if types.len() >= MAX_PROCESS_TYPES {
            break;
        }
        if let Some((name, command)) = line.split_once(": ")
            && crate::validate::process_type(name).is_ok()
        {
            types.entry(name.to_string()).or_insert_with(|| command.to_string());
        }
    }
    types
}

/// How many containers of each type run, given the app's scale settings and the types
/// the release has: a type not scaled explicitly runs 1 container if it is `web`, else 0
/// (as dokku does). Types the release lacks are left out. Sorted with `web` first.
pub fn formation(scale: &BTreeMap<String, u32>, types: &[String]) -> Vec<(String, u32)> {
    let mut plan: Vec<(String, u32)> = types
        .iter()
        .filter(|t| *t != RELEASE_TYPE)
        .map(|t| (t.clone(), scale.get(t).copied().unwrap_or(if t == WEB { 1 } else { 0 })))
        .collect();
    plan.sort_by_key(|(t, _)| (t != WEB, t.clone()));
    plan
}

/// Parses `ps:scale` arguments: `web=2 worker=1`.
pub fn parse_scale(args: &[String]) -> Result<Vec<(String, u32)>, Invalid> {
    if args.is_empty() {
        return Err(Invalid("Say what to scale: ps:scale APP TYPE=N [TYPE=N …], e.g. web=2 worker=1".into()));
    }
    let mut out: Vec<(String, u32)> = Vec::new();
    for arg in args {
        let (name, count) = arg.split_once('=').ok_or_else(|| Invalid(format!("{arg:?} is not TYPE=N (e.g. web=2)")))?;
        crate::validate::process_type(name)?;
        if name == RELEASE_TYPE {
            return Err(Invalid("The release process runs once per deploy; it cannot be scaled".into()));
        }
        let count: u32 = count.parse().map_err(|_| Invalid(format!("{arg:?}: the count must be a whole number from 0 to {MAX_SCALE}")))?;
        if count > MAX_SCALE {
            return Err(Invalid(format!("{arg:?}: at most {MAX_SCALE} containers of one type")));
        }
        if out.iter().any(|(t, _)| t == name) {
            return Err(Invalid(format!("{name} is named twice")));
        }
        out.push((name.to_string(), count));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn procfiles_parse_strictly() {
        let types = parse_procfile("# comment\nweb: python app.py --port $PORT\n\nworker:   python worker.py\nrelease: ./migrate\n").unwrap();
        assert_eq!(types["web"], "python app.py --port $PORT");
        assert_eq!(types["worker"], "python worker.py");
        assert_eq!(types.len(), 3);
        assert!(parse_procfile("web python app.py").unwrap_err().0.contains("line 1"));
        assert!(parse_procfile("web:\n").is_err());
        assert!(parse_procfile("we b: x").is_err());
        assert!(parse_procfile("web: a\nweb: b").unwrap_err().0.contains("twice"));
    }

    #[test]
    fn launcher_lists_keep_the_first_of_a_type() {
        let types = parse_process_list("web: gunicorn app\nworker: celery\nweb: other\ngarbage\n");
        assert_eq!(types["web"], "gunicorn app");
        assert_eq!(types.len(), 2);
    }

    #[test]
    fn web_runs_by_default_others_when_scaled() {
        let types: Vec<String> = ["worker", "web", "clock", "release"].iter().map(|s| s.to_string()).collect();
        let plan = formation(&map(&[("worker", 2), ("gone", 3)]), &types);
        assert_eq!(plan, vec![("web".into(), 1), ("clock".into(), 0), ("worker".into(), 2)]);
        let plan = formation(&map(&[("web", 0)]), &types);
        assert_eq!(plan[0], ("web".into(), 0));
    }

    #[test]
    fn scale_arguments() {
        let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(parse_scale(&args("web=2 worker=0")).unwrap(), vec![("web".into(), 2), ("worker".into(), 0)]);
        for bad in ["", "web", "web=-1", "web=x", "web=101", "web=1 web=2", "release=1", "../x=1"] {
            assert!(parse_scale(&args(bad)).is_err(), "{bad}");
        }
    }
}
