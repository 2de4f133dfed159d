//! How a command talks back: stdout and stderr chunks on a channel, stdin on another.
//!
//! Commands never know which front door called them. The SSH server and the local socket
//! pump these channels to their own transports, so the same bytes and exit code reach
//! whoever asked. Formatting follows dokku: `=====> ` headers, `-----> ` steps, 7-space
//! detail lines, ` !     ` errors on stderr.

use serde_json::Value;
use tokio::sync::mpsc;

/// Exit code of a refused or failed command (never 255, which is ssh's own).
pub const EXIT_FAILURE: i32 = 1;

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
    /// Bytes of child output (builds, buildpacks, plugins) passed on so far, shared by every
    /// clone: one command's child output is bounded and paced as a whole.
    streamed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The child output past the bound: how many lines, and the last of them.
    dropped: std::sync::Arc<std::sync::Mutex<Dropped>>,
    /// What lives until the output has reached the client (see `hold_until_delivered`).
    held: Held,
    /// A file that gets a copy of what is written (`teed`), up to `MAX_TEE` bytes.
    tee: Option<std::sync::Arc<std::sync::Mutex<Tee>>>,
}

/// The most a teed file keeps (a deploy's log); past it, a last line says it was cut.
const MAX_TEE: usize = 1024 * 1024;

struct Tee {
    file: std::fs::File,
    written: usize,
}

impl Tee {
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if self.written >= MAX_TEE {
            return;
        }
        let room = MAX_TEE - self.written;
        let taken = &bytes[..bytes.len().min(room)];
        let _ = self.file.write_all(taken);
        self.written += taken.len();
        if self.written >= MAX_TEE {
            let _ = self.file.write_all(b"\n(cut: the log is kept up to 1 MiB)\n");
        }
    }
}

/// Guards a command hands to its front door, dropped once its client has been told how it
/// ended (or is gone): a push counts as work a shutdown waits for until then.
pub type Held = std::sync::Arc<std::sync::Mutex<Vec<Box<dyn Send>>>>;

/// Lines past `MAX_CHILD_OUTPUT`: counted, the last `DROPPED_TAIL` kept (with whether they
/// are detail lines), for `child_output_done`.
#[derive(Default)]
struct Dropped {
    count: usize,
    tail: std::collections::VecDeque<(String, bool)>,
}

/// How many of the lines past the bound are shown when the child is done: a failing
/// build's last words say why it failed.
const DROPPED_TAIL: usize = 20;

/// The longest line berth passes on from a build, a buildpack or a plugin; the rest of a
/// longer line is cut, with a marker saying how much.
pub const MAX_LINE: usize = 4 * 1024;

/// The longest line of an app's own logs (`logs`): an app's JSON log lines and stack traces
/// run longer than a build's, and the user asked for them.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// How much child output one command passes on; the rest is counted, not shown. A client
/// reading slowly (git behind OpenSSH's non-blocking stderr drops what it cannot write)
/// then loses nothing that matters: the phase lines and the verdict come after.
pub const MAX_CHILD_OUTPUT: usize = 1024 * 1024;

/// Child output up to this much goes out as fast as the client reads; beyond it, at about
/// `PACED_BYTES_PER_SEC`, so a flood never outruns a slow terminal.
const UNPACED_CHILD_OUTPUT: usize = 256 * 1024;
const PACED_BYTES_PER_SEC: u64 = 1024 * 1024;

/// An info flag a report was asked for, and the prefix of its namespace's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoFlag {
    pub prefix: String,
    pub flag: String,
}

impl Output {
    pub fn channel(capacity: usize) -> (Output, mpsc::Receiver<Chunk>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Output { tx, quiet: false, info: None, streamed: Default::default(), dropped: Default::default(), held: Default::default(), tee: None }, rx)
    }

    /// An Output nobody reads (its chunks are drained and dropped); it is never closed.
    pub fn discard() -> Output {
        let (out, mut rx) = Output::channel(16);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        out
    }

    pub async fn stdout(&self, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        self.copy(&bytes);
        let _ = self.tx.send(Chunk::Stdout(bytes)).await;
    }

    pub async fn stderr(&self, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        self.copy(&bytes);
        let _ = self.tx.send(Chunk::Stderr(bytes)).await;
    }

    fn copy(&self, bytes: &[u8]) {
        if let Some(tee) = &self.tee {
            tee.lock().unwrap_or_else(|p| p.into_inner()).write(bytes);
        }
    }

    /// The same output, with a copy of all written from now on in `path` (made anew, 0600).
    /// A file that cannot be made is logged and left out.
    pub fn teed(&self, path: &std::path::Path) -> Output {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path) {
            Ok(file) => Output { tee: Some(std::sync::Arc::new(std::sync::Mutex::new(Tee { file, written: 0 }))), ..self.clone() },
            Err(e) => {
                tracing::warn!("cannot keep a copy of the output in {}: {e}", path.display());
                self.clone()
            }
        }
    }

    /// Writes to the teed file only (what the client is told elsewhere, e.g. the last error).
    pub fn note_in_copy(&self, text: &str) {
        self.copy(text.as_bytes());
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
    /// Keeps `guard` alive until the front door has delivered this command's output and exit
    /// code, not only until the command returns.
    pub fn hold_until_delivered(&self, guard: impl Send + 'static) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(guard));
    }

    /// What the command asked to keep until its output is delivered (for its front door).
    pub fn held(&self) -> Held {
        self.held.clone()
    }

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

    /// One line of a child's output (a build step, a buildpack, a plugin), already cut to
    /// `MAX_LINE` by `Lines`, as a detail line (`indent`) or as it is. Passed on while the
    /// command's `MAX_CHILD_OUTPUT` lasts (paced beyond `UNPACED_CHILD_OUTPUT`); past it,
    /// one line says so and the rest is dropped.
    pub async fn child_line(&self, line: &str, indent: bool) {
        use std::sync::atomic::Ordering;
        let size = line.len() + if indent { 8 } else { 1 };
        let before = self.streamed.fetch_add(size, Ordering::Relaxed);
        if before + size > MAX_CHILD_OUTPUT {
            {
                let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
                dropped.count += 1;
                dropped.tail.push_back((line.to_string(), indent));
                if dropped.tail.len() > DROPPED_TAIL {
                    dropped.tail.pop_front();
                }
            }
            if before < MAX_CHILD_OUTPUT {
                self.detail(format!("… more output than {} KiB: the rest of it is not shown", MAX_CHILD_OUTPUT / 1024)).await;
            }
            return;
        }
        if before + size > UNPACED_CHILD_OUTPUT {
            tokio::time::sleep(std::time::Duration::from_micros(size as u64 * 1_000_000 / PACED_BYTES_PER_SEC)).await;
        }
        if indent { self.detail(line).await } else { self.line(line).await }
    }

    /// The child (a build) is done: of its lines past the bound, the last `DROPPED_TAIL`
    /// are shown now, after a line saying how many were not.
    pub async fn child_output_done(&self) {
        let Dropped { count, tail } = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|e| e.into_inner()));
        if count == 0 {
            return;
        }
        self.detail(format!("… {} line(s) not shown; the last {}:", count - tail.len(), tail.len())).await;
        for (line, indent) in tail {
            if indent { self.detail(line).await } else { self.line(line).await }
        }
    }
}

/// The lines of a stream of byte chunks (a child's stdout, a container's logs), as `Lines`
/// splits them; it ends where the chunks end.
pub fn lines_of<B: AsRef<[u8]> + Send + 'static>(chunks: impl futures_util::Stream<Item = B> + Send + 'static, limit: usize) -> futures_util::stream::BoxStream<'static, String> {
    use futures_util::StreamExt;
    let chunks = chunks.boxed();
    futures_util::stream::unfold((chunks, Lines::with_limit(limit), std::collections::VecDeque::new()), |(mut chunks, mut lines, mut ready)| async move {
        loop {
            if let Some(line) = ready.pop_front() {
                return Some((line, (chunks, lines, ready)));
            }
            match chunks.next().await {
                Some(chunk) => ready.extend(lines.push(chunk.as_ref())),
                None => {
                    let line = lines.finish()?;
                    return Some((line, (chunks, lines, ready)));
                }
            }
        }
    })
    .boxed()
}

/// The lines of what a child process writes to one of its pipes.
pub fn lines_of_reader(reader: impl tokio::io::AsyncRead + Send + 'static) -> futures_util::stream::BoxStream<'static, String> {
    lines_of(ok_until_error(tokio_util::io::ReaderStream::new(reader)), MAX_LINE)
}

/// The items of a stream up to its first error.
pub fn ok_until_error<T, E>(stream: impl futures_util::Stream<Item = Result<T, E>>) -> impl futures_util::Stream<Item = T> {
    use futures_util::StreamExt;
    stream.take_while(|item| std::future::ready(item.is_ok())).filter_map(|item| std::future::ready(item.ok()))
}

/// Splits a byte stream into the lines a user reads: split on bytes, then decoded (a
/// character split across two chunks survives), trailing white space dropped, and a line
/// longer than `MAX_LINE` cut there with a marker saying how much was cut. It holds at
/// most `MAX_LINE` bytes, whatever the stream.
pub struct Lines {
    pending: Vec<u8>,
    cut: usize,
    limit: usize,
}

impl Default for Lines {
    fn default() -> Lines {
        Lines::with_limit(MAX_LINE)
    }
}

impl Lines {
    /// Lines cut at `limit` bytes instead of `MAX_LINE`.
    pub fn with_limit(limit: usize) -> Lines {
        Lines { pending: Vec::new(), cut: 0, limit }
    }

    /// Takes the next bytes of the stream; returns the lines they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            lines.push(self.take());
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
        lines
    }

    /// The last line, when the stream ended without a newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty() || self.cut > 0).then(|| self.take())
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.pending.len()).min(bytes.len());
        self.pending.extend_from_slice(&bytes[..room]);
        self.cut += bytes.len() - room;
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        // A cut may have split the last character: it goes with the cut part.
        if self.cut > 0
            && let Err(e) = std::str::from_utf8(&bytes)
            && e.error_len().is_none()
        {
            self.cut += bytes.len() - e.valid_up_to();
            bytes.truncate(e.valid_up_to());
        }
        let mut line = String::from_utf8_lossy(&bytes).trim_end().to_string();
        if self.cut > 0 {
            line.push_str(&format!(" … [{} more bytes of this line cut]", self.cut));
            self.cut = 0;
        }
        line
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
/// (keys are the labels in kebab case, values keep their JSON types; as in dokku, each key
/// also without its namespace word: `ps-restart-policy` and `restart-policy`).
pub struct Report {
    pub title: String,
    pub rows: Vec<Row>,
    /// The namespace of its keys (`ps`): JSON has each key with it and without it. None:
    /// the short form is the key without its first word.
    namespace: Option<&'static str>,
}

/// One value of a report.
pub struct Row {
    pub label: std::borrow::Cow<'static, str>,
    /// The JSON key and info flag, when not the label in kebab case (`docker-options-deploy.web`).
    key: Option<String>,
    pub value: Value,
    /// A JSON-only value (dokku's structured `deploy-list`): no text line, no info flag,
    /// no namespaced key.
    json_only: bool,
}

impl Row {
    /// Its JSON key, and its info flag without the dashes.
    pub fn key(&self) -> String {
        self.key.clone().unwrap_or_else(|| self.label.to_ascii_lowercase().replace(' ', "-"))
    }
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report { title: title.into(), rows: Vec::new(), namespace: None }
    }

    /// The namespace of the keys (`ps`, `docker-options`): JSON gives each key with and
    /// without it.
    pub fn namespace(mut self, namespace: &'static str) -> Report {
        self.namespace = Some(namespace);
        self
    }

    pub fn row(mut self, label: impl Into<std::borrow::Cow<'static, str>>, value: impl Into<Value>) -> Report {
        self.rows.push(Row { label: label.into(), key: None, value: value.into(), json_only: false });
        self
    }

    /// A row whose JSON key and info flag are `key`, not its label's kebab case.
    pub fn keyed_row(mut self, label: impl Into<std::borrow::Cow<'static, str>>, key: String, value: impl Into<Value>) -> Report {
        self.rows.push(Row { label: label.into(), key: Some(key), value: value.into(), json_only: false });
        self
    }

    /// dokku's three values of a property (`procfile-path`): the app's own (empty when
    /// unset), the global one (empty when unset) and the one in force, as rows `NAME`,
    /// `global-NAME` and `computed-NAME`.
    pub fn layered(self, name: &str, raw: Option<String>, global: Option<String>, computed: impl Into<Value>) -> Report {
        let label = capitalized(&format!("{}{}", self.label_prefix(), name.replace('-', " ")));
        self.keyed_row(label, name.to_string(), raw.unwrap_or_default()).global_layer(name, global, computed)
    }

    /// `Ps ` for the `ps` namespace: labels read as dokku's (`Ps computed procfile path`).
    fn label_prefix(&self) -> String {
        self.namespace.map(|ns| format!("{} ", ns.replace('-', " "))).unwrap_or_default()
    }

    /// The global and computed values of a property (`NS:report --global`).
    pub fn global_layer(self, name: &str, global: Option<String>, computed: impl Into<Value>) -> Report {
        let (prefix, words) = (self.label_prefix(), name.replace('-', " "));
        self.keyed_row(capitalized(&format!("{prefix}global {words}")), format!("global-{name}"), global.unwrap_or_default())
            .keyed_row(capitalized(&format!("{prefix}computed {words}")), format!("computed-{name}"), computed)
    }

    /// A value of the JSON form only, under `key` as given.
    pub fn json_only(mut self, key: String, value: impl Into<Value>) -> Report {
        self.rows.push(Row { label: std::borrow::Cow::Borrowed(""), key: Some(key), value: value.into(), json_only: true });
        self
    }

    /// The rows a person sees (text, info flags).
    pub fn shown(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.json_only)
    }

    pub fn to_json(&self) -> Value {
        // With a namespace, each key in both of dokku's forms, `ps-restart-policy` and
        // `restart-policy`, whichever a row's label gives; without, the label's and the
        // label's without its first word.
        let forms = |key: String| -> (String, Option<String>) {
            match self.namespace {
                Some(namespace) => match key.strip_prefix(namespace).and_then(|k| k.strip_prefix('-')) {
                    Some(short) => (key.clone(), Some(short.to_string())),
                    None => (format!("{namespace}-{key}"), Some(key)),
                },
                None => {
                    let short = key.split_once('-').map(|(_, k)| k.to_string());
                    (key, short)
                }
            }
        };
        let mut map = serde_json::Map::new();
        let mut stripped = Vec::new();
        for row in self.shown() {
            let (full, short) = forms(row.key());
            map.insert(full, row.value.clone());
            stripped.extend(short.map(|short| (short, row.value.clone())));
        }
        for (key, value) in stripped {
            map.entry(key).or_insert(value);
        }
        for row in self.rows.iter().filter(|r| r.json_only) {
            map.insert(row.key(), row.value.clone());
        }
        Value::Object(map)
    }

    pub fn to_text(&self) -> String {
        let width = self.shown().map(|r| r.label.len()).max().unwrap_or(0) + 1;
        let mut text = format!("=====> {}\n", self.title);
        for row in self.shown() {
            let shown = plain(&row.value);
            let line = format!("       {:<width$} {}", format!("{}:", row.label), shown);
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `procfile path` → `Procfile path`. Pure.
fn capitalized(words: &str) -> String {
    let mut chars = words.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
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

/// A report row's info flag: `--` and its key (the label in kebab case), after the
/// namespace's prefix unless the key starts with it (`App locked` → `--app-locked`, ps's
/// `Restart policy` → `--ps-restart-policy`). Pure.
pub fn info_flag(prefix: &str, key: &str) -> String {
    let kebab = key.to_ascii_lowercase().replace(' ', "-");
    if kebab.starts_with(&format!("{prefix}-")) { format!("--{kebab}") } else { format!("--{prefix}-{kebab}") }
}

/// dokku's info flags: the one value asked for (an empty line when unset), per report.
async fn print_info(out: &Output, reports: &[(String, Report)], info: &InfoFlag) -> Result<(), String> {
    let mut valid: Vec<String> = reports.first().map(|(_, r)| r.shown().map(|row| info_flag(&info.prefix, &row.key())).collect()).unwrap_or_default();
    valid.sort();
    valid.dedup();
    if !valid.contains(&info.flag) {
        return Err(format!("Invalid flag passed, valid flags: {}", valid.join(", ")));
    }
    for (_, report) in reports {
        let value = report.shown().find(|row| info_flag(&info.prefix, &row.key()) == info.flag).map(|row| plain(&row.value)).unwrap_or_default();
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
        assert_eq!(r.to_json()["locked"], Value::Bool(false), "dokku's key without its namespace, beside the full one");
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
    fn lines_are_split_on_bytes_and_cut_with_a_marker() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"one\r\ntw"), vec!["one"]);
        // "é" split across two chunks.
        assert_eq!(lines.push(b"o \xc3"), Vec::<String>::new());
        assert_eq!(lines.push(b"\xa9\npart"), vec!["two é"]);
        assert_eq!(lines.finish().as_deref(), Some("part"));
        assert_eq!(lines.finish(), None);
        // 6 MB without a newline, in chunks: one line of MAX_LINE bytes and a marker.
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..100 {
            assert!(lines.push(&chunk).is_empty());
        }
        let long = lines.push(b"\nnext\n");
        assert_eq!(long.len(), 2);
        assert_eq!(long[0], format!("{} … [{} more bytes of this line cut]", "x".repeat(MAX_LINE), 100 * 64 * 1024 - MAX_LINE));
        assert_eq!(long[1], "next");
        // A cut inside a multi-byte character: the character goes with the cut part.
        let mut lines = Lines::default();
        let mut text = "a".repeat(MAX_LINE - 1).into_bytes();
        text.extend_from_slice("éé\n".as_bytes());
        assert_eq!(lines.push(&text), vec![format!("{} … [4 more bytes of this line cut]", "a".repeat(MAX_LINE - 1))]);
    }

    #[tokio::test(start_paused = true)]
    async fn child_output_is_bounded_per_command() {
        let (out, mut rx) = Output::channel(1024);
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            while let Some(Chunk::Stdout(chunk)) = rx.recv().await {
                text.push_str(&String::from_utf8(chunk).unwrap());
            }
            text
        });
        let line = "y".repeat(1000);
        let started = tokio::time::Instant::now();
        // 10 MB from two clones of one command's output.
        for _ in 0..5000 {
            out.child_line(&line, true).await;
            out.clone().child_line(&line, false).await;
        }
        out.child_line("the last words", true).await;
        out.child_output_done().await;
        out.step("Build done").await;
        drop(out);
        let text = reader.await.unwrap();
        let bytes = text.len();
        let last: Vec<&str> = text.lines().rev().take(3).collect();
        // The bound, the line saying so, and the last lines past it (20 of 1000 bytes).
        assert!(bytes <= MAX_CHILD_OUTPUT + 8 * 1024 + 200 + 21 * 1010, "{bytes} bytes passed on");
        assert!(bytes >= MAX_CHILD_OUTPUT - 2 * 1024, "{bytes} bytes passed on");
        // Then, once the build is done, the last lines past the bound, its last words last.
        assert_eq!(last[0], "-----> Build done");
        assert_eq!(last[1], "       the last words");
        assert_eq!(text.matches("the rest of it is not shown").count(), 1);
        assert!(text.contains("line(s) not shown; the last 20:"), "{}", &text[text.len() - 300..]);
        // Paced past the first 256 KiB: about 0.75 s for the next 768 KiB (paused time).
        let took = started.elapsed().as_secs_f64();
        assert!((0.7..1.0).contains(&took), "{took}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc(1_795_302_226), "2026-11-21 23:03"); // date -u -d @1795302226
    }
}
