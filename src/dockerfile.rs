//! What a pushed Dockerfile builds from. Apps share one Docker engine, and every app's
//! images are tagged `berth/APP:vN`: a Dockerfile must not read another app's image (its
//! code, its build-time secrets) with `FROM` or `COPY --from`. Pure.

/// Images a Dockerfile names in `FROM` and `COPY --from=` (stage names excluded), each
/// word read as Docker reads it: quotes removed, escapes applied, `ARG` and `ENV` values
/// substituted (berth passes no build arguments, so the defaults are what the build uses).
/// A word that cannot be read for sure (an unknown variable, an unclosed quote, a
/// substitution form Docker's builder may not share) comes back marked [`UNCLEAR`].
pub fn image_refs(text: &str) -> Vec<String> {
    walk(text).refs
}

/// The remote sources of `ADD` instructions (URLs: the engine fetches them itself), read as
/// Docker reads them; one that cannot be read for sure comes back marked [`UNCLEAR`].
pub fn remote_sources(text: &str) -> Vec<String> {
    walk(text).remotes
}

/// The keys `LABEL` instructions set (also in `ONBUILD`), read as Docker reads them; one that
/// cannot be read for sure comes back marked [`UNCLEAR`].
pub fn label_keys(text: &str) -> Vec<String> {
    walk(text).labels
}

/// The first label key of a Dockerfile in berth's namespace (`berth.…`, which berth sets on
/// what it builds and runs), or one that cannot be read for sure.
pub fn berth_label(text: &str) -> Option<String> {
    label_keys(text).into_iter().find(|key| key.to_ascii_lowercase().starts_with("berth.") || key.starts_with(UNCLEAR))
}

/// What a Dockerfile names, each word read as Docker reads it.
#[derive(Default)]
struct Named {
    /// Images (`FROM`, `COPY --from`).
    refs: Vec<String>,
    /// Remote `ADD` sources.
    remotes: Vec<String>,
    /// `LABEL` keys.
    labels: Vec<String>,
}

/// The images, the remote `ADD` sources and the label keys of a Dockerfile.
fn walk(text: &str) -> Named {
    let escape = escape_directive(text).unwrap_or('\\');
    let Named { mut refs, mut remotes, mut labels } = Named::default();
    let mut vars: Vars = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let read = |word: &str, vars: &Vars| expand(word, escape, vars).unwrap_or_else(|| format!("{UNCLEAR}{word}"));
    for line in logical_lines(text, escape) {
        let words = split_words(&line, escape);
        let Some((mut instruction, mut rest)) = words.split_first() else { continue };
        // `ONBUILD COPY --from=…` runs in a later build (of an image made from this one),
        // where this file's stage names mean nothing: its sources are always images.
        let onbuild = instruction.eq_ignore_ascii_case("ONBUILD");
        if onbuild {
            let Some((inner, more)) = rest.split_first() else { continue };
            (instruction, rest) = (inner, more);
        }
        let stages_here: &[String] = if onbuild { &[] } else { &stages };
        match instruction.to_ascii_uppercase().as_str() {
            "ARG" => {
                for decl in rest {
                    let (name, value) = split_assignment(decl, escape);
                    // An ARG without a default is empty: berth passes no build arguments.
                    let value = value.map_or(Some(String::new()), |v| expand(v, escape, &vars));
                    vars.push((name, value));
                }
            }
            "ENV" => match rest {
                [name, _, ..] if !name.contains('=') => vars.push((name.clone(), expand(&rest[1..].join(" "), escape, &vars))),
                _ => {
                    for decl in rest {
                        let (name, value) = split_assignment(decl, escape);
                        let value = value.and_then(|v| expand(v, escape, &vars));
                        vars.push((name, value));
                    }
                }
            },
            "LABEL" => match rest {
                // The old form: `LABEL key value…`.
                [key, _, ..] if !key.contains('=') => labels.push(read(key, &vars)),
                _ => labels.extend(rest.iter().map(|decl| read(decl.split_once('=').map_or(decl.as_str(), |(key, _)| key), &vars))),
            },
            "FROM" => {
                let mut words = rest.iter().filter(|w| !w.starts_with("--"));
                if let Some(image) = words.next().map(|w| read(w, &vars))
                    && !stages.contains(&image.to_ascii_lowercase())
                {
                    refs.push(image);
                }
                if words.next().is_some_and(|w| w.eq_ignore_ascii_case("as"))
                    && let Some(stage) = words.next()
                {
                    stages.push(read(stage, &vars).to_ascii_lowercase());
                }
            }
            "COPY" | "ADD" => {
                let sources = rest.iter().skip_while(|w| w.starts_with("--")).collect::<Vec<_>>();
                if instruction.eq_ignore_ascii_case("ADD") && let Some((_, sources)) = sources.split_last() {
                    for source in sources {
                        let read = read(source, &vars);
                        let remote = read.contains("://") || read.starts_with("git@") || (read.starts_with(UNCLEAR) && source.contains(':'));
                        if remote {
                            remotes.push(read);
                        }
                    }
                }
                for flag in rest.iter().take_while(|w| w.starts_with("--")) {
                    if let Some(source) = flag.strip_prefix("--from=") {
                        let source = read(source, &vars);
                        if !stages_here.contains(&source.to_ascii_lowercase()) && source.parse::<usize>().is_err() {
                            refs.push(source);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Named { refs, remotes, labels }
}

/// What starts an image reference berth could not read for sure: it is never allowed.
pub const UNCLEAR: &str = "$unclear:";

/// Variables known so far, in order (the last wins): None for a value that cannot be read.
type Vars = Vec<(String, Option<String>)>;

/// `NAME=VALUE` (VALUE still raw) or a bare `NAME`.
fn split_assignment(word: &str, escape: char) -> (String, Option<&str>) {
    match word.split_once('=') {
        Some((name, value)) => (expand(name, escape, &Vec::new()).unwrap_or_else(|| name.to_string()), Some(value)),
        None => (word.to_string(), None),
    }
}

/// A line's words, split at whitespace outside quotes (quotes and escapes kept: each word
/// is read by `expand`).
fn split_words(line: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                word.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some('\''), c) => word.push(c),
            (_, c) if c == escape => {
                word.push(c);
                word.extend(chars.next());
            }
            (_, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// One word as Docker's builder reads it: `'…'` literal, `"…"` with escapes of `"`, `$` and
/// the escape character and with substitution, the escape character outside quotes taking
/// the next character as it is, and `$NAME`, `${NAME}`, `${NAME:-WORD}`, `${NAME:+WORD}`
/// replaced from `vars`. None when it cannot be read for sure: an unclosed quote or brace, a
/// variable not declared or not readable, another `${…}` form.
pub fn expand(word: &str, escape: char, vars: &Vars) -> Option<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (Some(_), c) if c == escape => match chars.get(i) {
                Some(&next) if next == '"' || next == '$' || next == escape => {
                    out.push(next);
                    i += 1;
                }
                _ => out.push(c),
            },
            (None, c) if c == escape => {
                out.push(*chars.get(i)?);
                i += 1;
            }
            (_, '$') => i = substitute_at(&chars, i, escape, vars, &mut out)?,
            (_, c) => out.push(c),
        }
    }
    quote.is_none().then_some(out)
}

/// The substitution after a `$` at `chars[i-1]`: appended to `out`; the index after it.
fn substitute_at(chars: &[char], i: usize, escape: char, vars: &Vars, out: &mut String) -> Option<usize> {
    let lookup = |name: &str| vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    if chars.get(i) != Some(&'{') {
        let end = chars[i..].iter().position(|c| !is_name(c)).map_or(chars.len(), |p| i + p);
        if end == i {
            out.push('$');
            return Some(i);
        }
        let name: String = chars[i..end].iter().collect();
        out.push_str(&lookup(&name)??);
        return Some(end);
    }
    let close = chars[i..].iter().position(|c| *c == '}').map(|p| i + p)?;
    let body: String = chars[i + 1..close].iter().collect();
    let name_end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    let (name, form) = body.split_at(name_end);
    let value = lookup(name);
    let set = value.as_ref().is_some_and(|v| v.as_ref().is_some_and(|v| !v.is_empty()));
    let text = match form {
        "" => value??,
        _ if form.starts_with(":-") => {
            if set { value?? } else { expand(&form[2..], escape, vars)? }
        }
        _ if form.starts_with(":+") => {
            if set { expand(&form[2..], escape, vars)? } else { String::new() }
        }
        _ => return None,
    };
    out.push_str(&text);
    Some(close + 1)
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

/// Instructions with their continuations joined, comments and blank lines dropped (also
/// between continued lines, as Docker does). The continuation character is `\\`, or what an
/// `# escape=` parser directive at the top sets.
fn logical_lines(text: &str, escape: char) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
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
            // Docker removes quotes and applies escapes before it names the image.
            "FROM \"berth/other:v2\"\n",
            "FROM 'berth/other':v2\n",
            "FROM b\\erth/other:v2\n",
            "FROM \"b\"erth/other:v2\n",
            "ARG B='berth/other:v2'\nFROM $B\n",
            "ARG B=\"berth/other:v2\"\nFROM ${B}\n",
            "ARG B=berth/other:v2\nFROM ${NOPE:-$B}\n",
            "ARG B=x\nFROM ${B:+berth/other:v2}\n",
            "FROM berth-test/busybox\nCOPY --from=\"berth/other:v2\" /a /b\n",
            "FROM berth-test/busybox\nENV SRC=berth/other:v2\nCOPY --from=$SRC /a /b\n",
            "# escape=`\nFROM b`erth/other:v2\n",
            // What cannot be read for sure is not allowed: other ${…} forms, an unclosed quote.
            "ARG B=berth/other:v2\nFROM ${B%:v2}:v2\n",
            "FROM \"berth/other:v2\n",
            // A comment between continued lines is dropped, as Docker drops it.
            "FROM berth-test/busybox AS a\nCOPY \\\n# a comment\n --from=berth/other:v1 /a /b\n",
        ] {
            assert!(refused("mine", dockerfile).is_some(), "{dockerfile:?}");
        }
    }

    #[test]
    fn words_are_read_as_docker_reads_them() {
        let vars: Vars = vec![("A".into(), Some("x".into())), ("E".into(), Some(String::new())), ("U".into(), None)];
        for (word, read) in [
            ("plain", Some("plain")),
            ("'single $A'", Some("single $A")),
            ("\"double $A\"", Some("double x")),
            ("\"esc \\\" \\$A\"", Some("esc \" $A")),
            ("a\\ b", Some("a b")),
            ("${A}y", Some("xy")),
            ("${E:-d}", Some("d")),
            ("${A:-d}", Some("x")),
            ("${A:+s}", Some("s")),
            ("${E:+s}", Some("")),
            ("$", Some("$")),
            ("$U", None),
            ("$NOT_DECLARED", None),
            ("${A", None),
            ("'open", None),
            ("${A#x}", None),
            ("end\\", None),
        ] {
            assert_eq!(expand(word, '\\', &vars).as_deref(), read, "{word}");
        }
        assert_eq!(expand("`$A", '`', &vars).as_deref(), Some("$A"));
        assert_eq!(split_words("COPY --from=\"a b\" 'c d' e\\ f", '\\'), ["COPY", "--from=\"a b\"", "'c d'", "e\\ f"]);
    }

    #[test]
    fn remote_add_sources_are_found_as_docker_reads_them() {
        let found = |d: &str| remote_sources(d);
        assert_eq!(found("FROM x\nADD http://127.0.0.1:9/secret /x\n"), ["http://127.0.0.1:9/secret"]);
        assert_eq!(found("FROM x\nARG U=http://10.0.0.1/a\nADD --chown=1 \"$U\" https://example.com/b /dst/\n"), ["http://10.0.0.1/a", "https://example.com/b"]);
        assert_eq!(found("FROM x\nONBUILD ADD git@host:repo.git /src\n"), ["git@host:repo.git"]);
        assert!(found("FROM x\nADD \"${NOPE}://h/a\" /x\n")[0].starts_with(UNCLEAR));
        assert!(found("FROM x\nADD app.tar.gz /srv/\nCOPY http://not-fetched /x\nADD ./a ./b /dst/\n").is_empty());
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
            "ARG PY=\"3.12\"\nFROM 'python':${PY}-slim\n",
            "ARG BASE=berth/mine:v3\nFROM \"$BASE\" AS build\nFROM build\n",
            "FROM berth-test/busybox\nENV A=1 B=\"two words\"\nRUN echo $A\n",
            "FROM berth-test/busybox\nRUN echo 'FROM berth/other:v1' \"$HOME\"\n",
        ] {
            assert_eq!(refused("mine", dockerfile), None, "{dockerfile:?}");
        }
    }

    #[test]
    fn labels_in_berths_namespace_are_found_however_written() {
        for text in [
            "FROM x\nLABEL berth.app=victim\n",
            "FROM x\nLABEL a=1 \"berth.process\"=web\n",
            "FROM x\nLABEL b\\erth.index=1\n",
            "FROM x\nARG K=berth.release\nLABEL ${K}=3\n",
            "FROM x\nLABEL BERTH.ROOT /var/lib/berth\n",
            "FROM x\nONBUILD LABEL berth.app=victim\n",
            "FROM x\nLABEL a=1 \\\n  berth.app=victim\n",
        ] {
            assert!(berth_label(text).is_some(), "{text:?}");
        }
        assert!(berth_label("FROM x\nLABEL ${UNDECLARED}=1\n").is_some_and(|k| k.starts_with(UNCLEAR)));
        assert_eq!(berth_label("FROM x\nLABEL maintainer=me org.opencontainers.image.source=https://x\nLABEL version 1\n"), None);
        assert_eq!(label_keys("FROM x\nLABEL a=1 b=\"two words\"\n"), vec!["a", "b"]);
    }
}
