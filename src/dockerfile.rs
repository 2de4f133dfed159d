//! What a pushed Dockerfile builds from. Apps share one Docker engine, and every app's
//! images are tagged `berth/APP:vN`: a Dockerfile must not read another app's image (its
//! code, its build-time secrets) with `FROM` or `COPY --from`. Pure.

/// Images a Dockerfile names in `FROM` and `COPY --from=` (stage names excluded), with the
/// `ARG` defaults it declares substituted (berth passes no build arguments, so those are
/// the values the build uses).
pub fn image_refs(text: &str) -> Vec<String> {
    let mut args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut refs = Vec::new();
    for line in logical_lines(text) {
        let mut words = line.split_whitespace();
        let Some(mut instruction) = words.next() else { continue };
        // `ONBUILD COPY --from=…` runs in a later build (of an image made from this one),
        // where this file's stage names mean nothing: its sources are always images.
        let onbuild = instruction.eq_ignore_ascii_case("ONBUILD");
        if onbuild {
            let Some(inner) = words.next() else { continue };
            instruction = inner;
        }
        let stages_here: &[String] = if onbuild { &[] } else { &stages };
        let rest: Vec<&str> = words.collect();
        match instruction.to_ascii_uppercase().as_str() {
            "ARG" => {
                for decl in rest {
                    let (name, value) = decl.split_once('=').unwrap_or((decl, ""));
                    let value = substitute(value.trim_matches('"'), &args);
                    args.push((name.to_string(), value));
                }
            }
            "FROM" => {
                let image = rest.iter().find(|w| !w.starts_with("--")).map(|w| substitute(w, &args));
                if let Some(image) = image
                    && !stages.contains(&image.to_ascii_lowercase())
                {
                    refs.push(image);
                }
                if let Some(pos) = rest.iter().position(|w| w.eq_ignore_ascii_case("as"))
                    && let Some(stage) = rest.get(pos + 1)
                {
                    stages.push(stage.to_ascii_lowercase());
                }
            }
            "COPY" | "ADD" => {
                for flag in rest.iter().take_while(|w| w.starts_with("--")) {
                    if let Some(source) = flag.strip_prefix("--from=") {
                        let source = substitute(source, &args);
                        if !stages_here.contains(&source.to_ascii_lowercase()) && source.parse::<usize>().is_err() {
                            refs.push(source);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    refs
}

/// The first image `app`'s Dockerfile may not use: another app's (`berth/OTHER`, however
/// written: `docker.io/berth/…`, any case), or one that cannot be told because a variable
/// is left in it.
pub fn foreign_image(app: &str, refs: &[String]) -> Option<String> {
    refs.iter()
        .find(|r| {
            let name = r.to_ascii_lowercase();
            let name = name.strip_prefix("docker.io/").or_else(|| name.strip_prefix("index.docker.io/")).unwrap_or(&name);
            // A variable left in it, or an image ID (`sha256:…` or a bare hex prefix), which
            // can name any local image, another app's too.
            let bare = name.split('@').next().unwrap_or_default();
            if name.contains('$') || name.starts_with("sha256:") || (!bare.is_empty() && bare.chars().all(|c| c.is_ascii_hexdigit())) {
                return true;
            }
            match name.strip_prefix("berth/") {
                Some(rest) => {
                    let repo = rest.split([':', '@']).next().unwrap_or_default();
                    repo != app && !(repo == "stack" && rest.starts_with("stack:bookworm"))
                }
                None => false,
            }
        })
        .cloned()
}

/// Instructions with their continuations joined, comments and blank lines dropped. The
/// continuation character is `\\`, or what an `# escape=` parser directive at the top sets.
fn logical_lines(text: &str) -> Vec<String> {
    let escape = escape_directive(text).unwrap_or('\\');
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix(escape) {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The escape character an `# escape=C` parser directive sets. Directives are read, as
/// Docker reads them, only from the comment lines at the very top (any line that is not a
/// directive ends them); a directive that is not `escape` (`# syntax=…`) is skipped.
fn escape_directive(text: &str) -> Option<char> {
    for line in text.lines() {
        let body = line.trim().strip_prefix('#')?;
        let (key, value) = body.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        if key.eq_ignore_ascii_case("escape") {
            return value.trim().chars().next();
        }
    }
    None
}

/// `$NAME` and `${NAME}` (also `${NAME:-default}`) replaced by the ARG values known so far;
/// an unknown one stays as it is.
fn substitute(word: &str, args: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, default, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => {
                    let body = &inner[..end];
                    let (name, default) = body.split_once(":-").map_or((body, None), |(n, d)| (n, Some(d)));
                    (name, default, end + 2)
                }
                None => ("", None, 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], None, end)
        };
        match args.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty()).or(default) {
            Some(value) if !name.is_empty() => out.push_str(value),
            _ => {
                out.push('$');
                out.push_str(&after[..consumed]);
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(app: &str, dockerfile: &str) -> Option<String> {
        foreign_image(app, &image_refs(dockerfile))
    }

    #[test]
    fn another_apps_image_is_found_however_it_is_written() {
        for dockerfile in [
            "FROM berth/other:v3\n",
            "from docker.io/berth/other:v1 AS build\n",
            "ARG BASE=berth/other:v2\nFROM ${BASE}\n",
            "ARG V=v2\nFROM berth/other:$V\n",
            "FROM berth-test/busybox AS a\nCOPY --from=berth/other:v1 /app /app\n",
            "FROM \\\n  BERTH/OTHER:v1\n",
            "FROM berth/other@sha256:abc\n",
            "ARG UNKNOWN\nFROM berth/$UNKNOWN:v1\n",
            // The continuation character changed by a parser directive.
            "# escape=`\nFROM `\n  berth/other:v1\n",
            "#syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM berth-test/busybox\nCOPY `\n --from=berth/other:v1 /a /b\n",
            // A trigger for the builds of images made from this one.
            "FROM berth-test/busybox AS base\nONBUILD COPY --from=berth/other:v1 /a /b\n",
            // Image IDs name any local image.
            "FROM sha256:4f2a6b1c\n",
            "FROM 4f2a6b1c9d0e\n",
            "FROM berth-test/busybox\nCOPY --from=4f2a6b /a /b\n",
        ] {
            assert!(refused("mine", dockerfile).is_some(), "{dockerfile:?}");
        }
    }

    #[test]
    fn ordinary_dockerfiles_pass() {
        for dockerfile in [
            "FROM berth-test/busybox\nRUN echo\n",
            "# FROM berth/other:v1\nFROM python:3.12-slim\n",
            "ARG PY=3.12\nFROM python:${PY}-slim AS base\nFROM base\nCOPY --from=base /a /b\nCOPY --from=0 /a /b\n",
            "FROM berth/mine:v4\n",
            "FROM --platform=linux/amd64 debian:bookworm\n",
            "FROM berth/stack:bookworm\n",
            "ARG TAG\nFROM debian:${TAG:-bookworm}\n",
            // A backslash is an ordinary character once the escape is a backtick.
            "# escape=`\nFROM berth-test/busybox\nRUN echo \\\nFROM berth/mine:v1\n",
            // A directive after the first line that is not one is only a comment.
            "FROM berth-test/busybox\n# escape=`\nRUN echo `\n",
        ] {
            assert_eq!(refused("mine", dockerfile), None, "{dockerfile:?}");
        }
    }
}
