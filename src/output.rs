//! How a command talks back: stdout and stderr chunks on a channel, stdin on another.
//!
//! Commands never know which front door called them. The SSH server and the local socket
//! pump these channels to their own transports, so the same bytes and exit code reach
//! whoever asked. Formatting follows dokku: `=====> ` headers, `-----> ` steps, 7-space
//! detail lines, ` !     ` errors on stderr.

use serde_json::Value;
use tokio::sync::mpsc;

/// One piece of a command's output.
#[derive(Debug)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// The writing end a command holds. Cloneable, so concurrent work can stream into it.
/// A client that went away makes writes no-ops: the command still runs to a consistent end.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Chunk>,
    /// dokku's `--quiet`: `=====>` and `----->` lines are dropped.
    quiet: bool,
    /// dokku's info flag of a `NS:report` (`--ps-restart-policy`): only that value is
    /// printed. With the namespace's flag prefix (`ps`; `app` for apps).
    info: Option<std::sync::Arc<InfoFlag>>,
}

/// An info flag a report was asked for, and the prefix of its namespace's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoFlag {
    pub prefix: String,
    pub flag: String,
}

impl Output {
    pub fn channel(capacity: usize) -> (Output, mpsc::Receiver<Chunk>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Output { tx, quiet: false, info: None }, rx)
    }

    /// An Output nobody reads (its chunks are drained and dropped); it is never closed.
    pub fn discard() -> Output {
        let (out, mut rx) = Output::channel(16);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        out
    }

    pub async fn stdout(&self, bytes: impl Into<Vec<u8>>) {
        let _ = self.tx.send(Chunk::Stdout(bytes.into())).await;
    }

    pub async fn stderr(&self, bytes: impl Into<Vec<u8>>) {
        let _ = self.tx.send(Chunk::Stderr(bytes.into())).await;
    }

    pub async fn line(&self, text: impl AsRef<str>) {
        self.stdout(format!("{}\n", text.as_ref())).await;
    }

    /// Copies a child process's output stream to the caller's stdout (or stderr) until the
    /// child closes it. A caller that is gone makes the writes no-ops and reading goes on, so
    /// a child never blocks on a full pipe (git waiting for its hook, which is deploying).
    pub async fn copy_from(&self, mut from: impl tokio::io::AsyncRead + Unpin, stderr: bool) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) if stderr => self.stderr(&buf[..n]).await,
                Ok(n) => self.stdout(&buf[..n]).await,
            }
        }
    }

    /// Resolves when whoever asked is gone (the front door dropped the other end): long
    /// commands such as `logs -t` stop then.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// `=====> text`
    pub async fn header(&self, text: impl AsRef<str>) {
        if !self.quiet {
            self.line(format!("=====> {}", text.as_ref())).await;
        }
    }

    /// `-----> text`
    pub async fn step(&self, text: impl AsRef<str>) {
        if !self.quiet {
            self.line(format!("-----> {}", text.as_ref())).await;
        }
    }

    /// The same output without `=====>` and `----->` lines (dokku's `--quiet`).
    pub fn quiet(&self) -> Output {
        Output { quiet: true, ..self.clone() }
    }

    /// The same output, for a report asked for one value only.
    pub fn with_info(&self, info: InfoFlag) -> Output {
        Output { info: Some(std::sync::Arc::new(info)), ..self.clone() }
    }

    /// Seven spaces, then text.
    pub async fn detail(&self, text: impl AsRef<str>) {
        self.line(format!("       {}", text.as_ref())).await;
    }

    /// ` !     text` on stderr.
    pub async fn error(&self, text: impl AsRef<str>) {
        self.stderr(format!(" !     {}\n", text.as_ref())).await;
    }
}

/// The reading end of the caller's stdin. Commands that do not read it drop it, and the
/// transport then discards what the client sends.
pub struct Input {
    rx: mpsc::Receiver<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("input is longer than {0} bytes")]
pub struct InputTooLong(pub usize);

impl Input {
    pub fn channel(capacity: usize) -> (mpsc::Sender<Vec<u8>>, Input) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Input { rx })
    }

    /// This input, leaving one at its end in its place: for a task of its own to read.
    pub fn take(&mut self) -> Input {
        std::mem::replace(self, Input::channel(1).1)
    }

    /// Feeds this input to a child process's stdin until the caller's input ends; the child
    /// then sees the end of its stdin (`to` is dropped). A child that stops reading is fed no
    /// more, while the input is still drained.
    pub async fn feed(mut self, to: impl tokio::io::AsyncWrite + Unpin) {
        use tokio::io::AsyncWriteExt;
        let mut to = Some(to);
        while let Some(chunk) = self.rx.recv().await {
            if let Some(stdin) = to.as_mut()
                && stdin.write_all(&chunk).await.is_err()
            {
                to = None;
            }
        }
    }

    /// The next chunk, or None at end of input.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// Everything up to end of input, refusing more than `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, InputTooLong> {
        let mut all = Vec::new();
        while let Some(chunk) = self.rx.recv().await {
            all.extend_from_slice(&chunk);
            if all.len() > limit {
                return Err(InputTooLong(limit));
            }
        }
        Ok(all)
    }

    /// One line (without its newline), or what there is before end of input.
    pub async fn read_line(&mut self, limit: usize) -> Result<String, InputTooLong> {
        let mut line = Vec::new();
        while let Some(chunk) = self.rx.recv().await {
            // A terminal in raw mode (`ssh -t`) sends Enter as \r.
            if let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                line.extend_from_slice(&chunk[..pos]);
                break;
            }
            line.extend_from_slice(&chunk);
            if line.len() > limit {
                return Err(InputTooLong(limit));
            }
        }
        let text = String::from_utf8_lossy(&line);
        Ok(text.trim_end_matches('\r').to_string())
    }
}

/// `--format` of report commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// A `*:report` section: a title and labelled values, printed as dokku does or as JSON
/// (keys are the labels in kebab case, values keep their JSON types).
pub struct Report {
    pub title: String,
    pub rows: Vec<(&'static str, Value)>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report { title: title.into(), rows: Vec::new() }
    }

    pub fn row(mut self, label: &'static str, value: impl Into<Value>) -> Report {
        self.rows.push((label, value.into()));
        self
    }

    pub fn to_json(&self) -> Value {
        let map = self
            .rows
            .iter()
            .map(|(label, value)| (label.to_ascii_lowercase().replace(' ', "-"), value.clone()))
            .collect();
        Value::Object(map)
    }

    pub fn to_text(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        let mut text = format!("=====> {}\n", self.title);
        for (label, value) in &self.rows {
            let shown = plain(value);
            let line = format!("       {:<width$} {}", format!("{label}:"), shown);
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// A JSON value as a person reads it: strings bare, lists space-separated.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// Prints one report, or several (one per app) as text sections or one JSON object.
pub async fn print_reports(out: &Output, reports: &[(String, Report)], single: bool, format: Format) -> Result<(), String> {
    if let Some(info) = &out.info {
        return print_info(out, reports, info).await;
    }
    match format {
        Format::Text => {
            for (_, report) in reports {
                out.stdout(report.to_text()).await;
            }
        }
        Format::Json => {
            let value = if single && reports.len() == 1 {
                reports[0].1.to_json()
            } else {
                Value::Object(reports.iter().map(|(k, r)| (k.clone(), r.to_json())).collect())
            };
            out.line(value.to_string()).await;
        }
    }
    Ok(())
}

/// A report row's info flag: `--` and its label in kebab case, after the namespace's
/// prefix unless the label starts with it (`App locked` → `--app-locked`, ps's `Restart
/// policy` → `--ps-restart-policy`). Pure.
pub fn info_flag(prefix: &str, label: &str) -> String {
    let kebab = label.to_ascii_lowercase().replace(' ', "-");
    if kebab.starts_with(&format!("{prefix}-")) { format!("--{kebab}") } else { format!("--{prefix}-{kebab}") }
}

/// dokku's info flags: the one value asked for (an empty line when unset), per report.
async fn print_info(out: &Output, reports: &[(String, Report)], info: &InfoFlag) -> Result<(), String> {
    let mut valid: Vec<String> = reports.first().map(|(_, r)| r.rows.iter().map(|(label, _)| info_flag(&info.prefix, label)).collect()).unwrap_or_default();
    valid.sort();
    valid.dedup();
    if !valid.contains(&info.flag) {
        return Err(format!("Invalid flag passed, valid flags: {}", valid.join(", ")));
    }
    for (_, report) in reports {
        let value = report.rows.iter().find(|(label, _)| info_flag(&info.prefix, label) == info.flag).map(|(_, v)| plain(v)).unwrap_or_default();
        out.line(value).await;
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM` UTC from Unix seconds (civil-from-days, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, (rem % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_is_aligned_like_dokku() {
        let r = Report::new("myapp app information")
            .row("App dir", "/var/lib/berth/apps/myapp")
            .row("App locked", false)
            .row("Domains", vec!["a.com", "b.com"]);
        assert_eq!(
            r.to_text(),
            "=====> myapp app information\n       App dir:    /var/lib/berth/apps/myapp\n       App locked: false\n       Domains:    a.com b.com\n"
        );
        assert_eq!(r.to_json()["app-locked"], Value::Bool(false));
        assert_eq!(r.to_json()["domains"][1], "b.com");
    }

    #[tokio::test]
    async fn read_line_stops_at_newline() {
        let (tx, mut input) = Input::channel(4);
        tx.send(b"my".to_vec()).await.unwrap();
        tx.send(b"app\r\nrest".to_vec()).await.unwrap();
        drop(tx);
        assert_eq!(input.read_line(100).await.unwrap(), "myapp");
    }

    #[tokio::test]
    async fn read_to_end_refuses_too_much() {
        let (tx, mut input) = Input::channel(4);
        tx.send(vec![0; 10]).await.unwrap();
        drop(tx);
        assert!(input.read_to_end(5).await.is_err());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc(1_795_302_226), "2026-11-21 23:03"); // date -u -d @1795302226
    }
}
