//! Text from outside (a server's error description, an HTML page, a header, a
//! configuration value) made safe to show: control characters escaped, long text cut,
//! and the secrets the client sent replaced by a marker.
//!
//! Everything that puts such text into an [`Error`](crate::Error), a log field or a
//! terminal goes through the crate's own `untrusted` first, so that a server cannot forge log lines,
//! move a terminal's cursor or colour its output, and cannot make the client print the
//! assertion or token it was sent.
//!
//! [`escape`] is public: tools built on the crate escape outside text the same way.

use std::fmt::Write;

/// `bytes` in lower-case hex, two digits a byte (digests, ids, fencing values).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// How many characters of outside text are kept; the rest is cut with a note.
pub(crate) const MAX_CHARS: usize = 512;

/// What a secret the client sent is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not searched for: a short string occurs by chance.
const MIN_SECRET: usize = 8;

/// `text` made safe to show: each secret in `secrets` (of at least eight characters)
/// replaced by `[redacted]`, control and bidirectional-override characters escaped
/// (`\n`, `\u{1b}`), and anything past [`MAX_CHARS`] characters cut.
pub(crate) fn untrusted(text: &str, secrets: &[&str]) -> String {
    let mut redacted = std::borrow::Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        if redacted.contains(secret) {
            redacted = std::borrow::Cow::Owned(redacted.replace(secret, REDACTED));
        }
    }
    let mut out = String::with_capacity(redacted.len().min(MAX_CHARS + 16));
    let mut chars = redacted.chars();
    for c in chars.by_ref().take(MAX_CHARS) {
        push_escaped(&mut out, c);
    }
    let rest = chars.count();
    if rest > 0 {
        let _ = write!(out, "... ({rest} more characters)");
    }
    out
}

/// `text` with every character that must not reach a terminal or a log line as it is
/// (control characters, bidirectional overrides and isolates, line and paragraph
/// separators) escaped as `\n`, `\r`, `\t` or `\u{..}`; nothing cut, nothing
/// redacted. The escaping the crate's own errors use for text from outside.
///
/// # Example
/// ```
/// assert_eq!(helseid::text::escape("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// Whether `c` must not reach a terminal or a log line as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides and isolates reorder what a reader sees.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        // Line and paragraph separators end lines in some viewers.
        || matches!(c, '\u{2028}' | '\u{2029}')
}

fn push_escaped(out: &mut String, c: char) {
    if !is_unsafe(c) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        let forged = "bad\nERROR forged log line\r\x1b[31mred\x1b[0m\u{202e}txt\u{7f}\u{85}";
        let safe = untrusted(forged, &[]);
        assert_eq!(
            safe,
            "bad\\nERROR forged log line\\r\\u{1b}[31mred\\u{1b}[0m\\u{202e}txt\\u{7f}\\u{85}"
        );
        assert!(!safe.chars().any(is_unsafe));
    }

    #[test]
    fn ordinary_text_is_kept() {
        let text = "client assertion expired (HID-1001): Ærlig, søt og blå \"quoted\"";
        assert_eq!(untrusted(text, &[]), text);
    }

    #[test]
    fn long_text_is_cut() {
        let long = "é".repeat(MAX_CHARS + 100);
        let safe = untrusted(&long, &[]);
        assert!(safe.starts_with(&"é".repeat(MAX_CHARS)));
        assert!(safe.ends_with("... (100 more characters)"), "{safe}");
    }

    #[test]
    fn secrets_are_replaced_before_anything_else() {
        let assertion = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln";
        let text = format!("bad assertion {assertion} (again: {assertion})");
        let safe = untrusted(&text, &[assertion, "short"]);
        assert_eq!(safe, "bad assertion [redacted] (again: [redacted])");
        // A secret cut in two by the length limit is redacted all the same.
        let padded = format!("{}{assertion}", "x".repeat(MAX_CHARS - 10));
        assert!(!untrusted(&padded, &[assertion]).contains("eyJhbGci"));
        // Too short to search for: left alone.
        assert_eq!(untrusted("a short word", &["short"]), "a short word");
    }
}
