//! What the commands print: lines and JSON on stdout, one-line errors, and text from
//! outside (a server, a file, an argument) escaped before it reaches a terminal, with
//! the library's [`helseid::text::escape`], as the library's own errors are.

use std::io::{StdoutLock, Write};
use std::path::Path;

use helseid::text::escape;

/// An error and its sources on one line, safe for a terminal: whatever a server or a
/// file put into them, control characters (a newline, an escape sequence) are escaped.
pub(crate) fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    escape(&line)
}

/// A field of NHN's schemas, all of which may be absent: `-` for none.
pub(crate) fn shown<T: std::fmt::Display>(value: Option<&T>) -> String {
    value.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// Standard output, locked for one command's lines.
pub(crate) struct Stdout(StdoutLock<'static>);

impl Stdout {
    pub(crate) fn lock() -> Self {
        Stdout(std::io::stdout().lock())
    }

    /// `text` on a line of its own, escaped: it may hold text from outside.
    pub(crate) fn line(&mut self, text: &str) -> std::io::Result<()> {
        writeln!(self.0, "{}", escape(text))
    }

    /// `text` as it is: text the command made itself (a token, a PEM block) or JSON that
    /// serde_json wrote (which escapes control characters in strings itself).
    pub(crate) fn raw(&mut self, text: &str) -> std::io::Result<()> {
        writeln!(self.0, "{text}")
    }

    /// Flushes what was printed.
    pub(crate) fn flush(mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// ` (<WWW-Authenticate>)` when the answer has a challenge.
fn challenge(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" ({v})"))
        .unwrap_or_default()
}

/// One line for a failed API call: the stack's own error when there is one (with its
/// sources), else the client's line (the API, the operation, the status and the
/// problem the API described) and the answer's challenge, if any.
pub(crate) fn describe_api_error(api: &str, error: &helseid::typed::Error) -> String {
    if let Some(e) = error.helseid() {
        return report(e);
    }
    match error.headers() {
        Some(headers) => format!("{}{}", escape(&error.to_string()), challenge(headers)),
        None => format!("{api} call failed: {}", report(error)),
    }
}

/// Writes a file that holds a secret (a key, a token) with the library's
/// [`helseid::private_file::write`]: a new owner-only file, created exclusively beside
/// `path` and renamed over it, so that a symbolic link at `path` is replaced, never
/// followed, and the secret is never readable by others, not even for a moment.
pub(crate) fn write_secret(path: &Path, contents: &[u8]) -> Result<(), String> {
    helseid::private_file::write(path, contents)
        .map_err(|e| format!("cannot write {}: {e}", escape(&path.display().to_string())))
}
