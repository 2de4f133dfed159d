//! What a log drain is and what it is sent, without IO: the drain's URL as `logs:set APP
//! drain URL` takes it, and a line as a syslog message (RFC 5424, framed by octet counting
//! as RFC 6587 says for TCP and TLS) or as a JSON object (HTTPS drains, one per line).
//! Pure.

use serde::Serialize;

/// Where an app's lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Drain {
    /// RFC 5424 over TCP, plain (`syslog+tcp://HOST:PORT`, default port 514) or TLS
    /// (`syslog+tls://HOST:PORT`, default 6514; the server's certificate checked against
    /// the system's CAs, or `SSL_CERT_FILE`'s).
    Syslog { host: String, port: u16, tls: bool },
    /// JSON lines POSTed in batches (`https://HOST[:PORT]/PATH`; `http://` too, for a
    /// receiver on the same machine or network).
    Http { url: String },
}

impl Drain {
    /// Reads a drain URL; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Drain, String> {
        let invalid = |why: &str| format!("Invalid drain {}: {why}", crate::validate::quoted(text));
        let url = url::Url::parse(text).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("a drain URL carries no user or password (use logs:set APP drain-token TOKEN for a bearer token)"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(invalid("it names no host")),
        };
        match url.scheme() {
            "syslog+tcp" | "syslog+tls" => {
                if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() || url.fragment().is_some() {
                    return Err(invalid("a syslog drain is HOST:PORT, with no path"));
                }
                let tls = url.scheme() == "syslog+tls";
                Ok(Drain::Syslog { host, port: url.port().unwrap_or(if tls { 6514 } else { 514 }), tls })
            }
            "https" | "http" => {
                if url.fragment().is_some() {
                    return Err(invalid("a drain URL has no #fragment"));
                }
                Ok(Drain::Http { url: url.to_string() })
            }
            other => Err(invalid(&format!("the scheme {other} is not one of syslog+tcp, syslog+tls, https, http"))),
        }
    }
}

impl Drain {
    /// The host a drain connects to and its port (an HTTP drain's from its URL, which
    /// `parse` checked names a host).
    pub fn host_and_port(&self) -> (String, u16) {
        match self {
            Drain::Syslog { host, port, .. } => (host.clone(), *port),
            Drain::Http { url } => {
                let url = url::Url::parse(url).ok();
                let host = url.as_ref().and_then(|u| u.host_str()).unwrap_or_default().trim_matches(['[', ']']).to_string();
                (host, url.and_then(|u| u.port_or_known_default()).unwrap_or(443))
            }
        }
    }
}

/// One line of an app's container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// When the container wrote it (RFC 3339, as the engine stamped it).
    pub time: String,
    pub app: String,
    pub process: String,
    pub instance: u32,
    pub release: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    #[serde(rename = "line")]
    pub text: String,
}

/// A syslog parameter value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn param(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]")
}

/// A header field: printable US-ASCII, at most `max` long, `-` when empty.
fn field(value: &str, max: usize) -> String {
    let clean: String = value.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// An RFC 3339 time as RFC 5424 takes it: at most six digits of the second's fraction
/// (the engine writes nine). Pure.
fn syslog_time(time: &str) -> String {
    match time.split_once('.') {
        Some((whole, rest)) => {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let zone = &rest[digits.len()..];
            format!("{whole}.{}{zone}", &digits[..digits.len().min(6)])
        }
        None => time.to_string(),
    }
}

/// The line as an RFC 5424 message framed by octet counting (`LEN SP MSG`): facility user,
/// severity info for stdout and err for stderr; APP-NAME the app (cut to the 48 characters
/// the field has; the structured data carries it whole), PROCID `PROCESS.N`, and the
/// structured data `[berth@32473 app=… process=… instance=… release=…]` (32473: the
/// documentation example enterprise number, RFC 5612).
pub fn syslog(line: &Line, hostname: &str) -> Vec<u8> {
    let severity = if line.stream == "stderr" { 3 } else { 6 };
    let message = format!(
        "<{}>1 {} {} {} {} - [berth@32473 app=\"{}\" process=\"{}\" instance=\"{}\" release=\"{}\"] {}",
        8 + severity,
        field(&syslog_time(&line.time), 64),
        field(hostname, 255),
        field(&line.app, 48),
        field(&format!("{}.{}", line.process, line.instance), 128),
        param(&line.app),
        param(&line.process),
        line.instance,
        param(&line.release),
        line.text
    );
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend(message.into_bytes());
    framed
}

/// Lines as an HTTP drain's body: one JSON object per line.
pub fn json_lines(lines: &[Line]) -> Vec<u8> {
    let mut body = Vec::new();
    for line in lines {
        if serde_json::to_writer(&mut body, line).is_ok() {
            body.push(b'\n');
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: &'static str, text: &str) -> Line {
        Line { time: "2026-12-06T04:00:00.123456789Z".into(), app: "shop".into(), process: "web".into(), instance: 2, release: "v7".into(), stream, text: text.into() }
    }

    #[test]
    fn drain_urls_are_read_and_bad_ones_refused() {
        assert_eq!(Drain::parse("syslog+tcp://logs.example.com:1514").unwrap(), Drain::Syslog { host: "logs.example.com".into(), port: 1514, tls: false });
        assert_eq!(Drain::parse("syslog+tls://10.0.0.5").unwrap(), Drain::Syslog { host: "10.0.0.5".into(), port: 6514, tls: true });
        assert_eq!(Drain::parse("syslog+tcp://[::1]:514").unwrap(), Drain::Syslog { host: "::1".into(), port: 514, tls: false });
        assert_eq!(Drain::parse("https://logs.example.com/ingest?src=berth").unwrap(), Drain::Http { url: "https://logs.example.com/ingest?src=berth".into() });
        for (bad, why) in [
            ("nope", "not a URL"),
            ("ftp://x.example.com", "not one of"),
            ("syslog+tcp://x.example.com:514/path", "no path"),
            ("https://user:pw@x.example.com/", "no user or password"),
            ("syslog://x.example.com", "not one of"),
            ("https://x.example.com/#frag", "fragment"),
        ] {
            let e = Drain::parse(bad).unwrap_err();
            assert!(e.starts_with("Invalid drain") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_syslog_message_is_rfc5424_framed_by_its_length() {
        let framed = String::from_utf8(syslog(&line("stdout", "GET / 200"), "host1")).unwrap();
        let (len, message) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        assert_eq!(message, "<14>1 2026-12-06T04:00:00.123456Z host1 shop web.2 - [berth@32473 app=\"shop\" process=\"web\" instance=\"2\" release=\"v7\"] GET / 200");
        assert_eq!(syslog_time("2026-12-06T04:00:00.1Z"), "2026-12-06T04:00:00.1Z");
        assert_eq!(syslog_time("2026-12-06T04:00:00.123456789+01:00"), "2026-12-06T04:00:00.123456+01:00");
        assert_eq!(syslog_time("2026-12-06T04:00:00Z"), "2026-12-06T04:00:00Z");
        let err = String::from_utf8(syslog(&line("stderr", "boom ü"), "")).unwrap();
        assert!(err.contains("<11>1 ") && err.contains(" - shop web.2 ") && err.ends_with("boom ü"), "{err}");
        // The length counts bytes, not characters.
        let (len, message) = err.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
    }

    #[test]
    fn structured_data_is_escaped() {
        let mut l = line("stdout", "x");
        l.release = "v1\"] [evil".into();
        let text = String::from_utf8(syslog(&l, "h")).unwrap();
        assert!(text.contains("release=\"v1\\\"\\] [evil\"]"), "{text}");
    }

    #[test]
    fn http_bodies_are_json_lines() {
        let body = String::from_utf8(json_lines(&[line("stdout", "a"), line("stderr", "b \"q\"")])).unwrap();
        let rows: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["app"], "shop");
        assert_eq!(rows[0]["instance"], 2);
        assert_eq!(rows[1]["line"], "b \"q\"");
        assert_eq!(rows[1]["stream"], "stderr");
    }
}
