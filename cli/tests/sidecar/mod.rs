//! What the sidecars' tests (`proxy.rs`, `gate.rs`) share: large bodies made as they
//! are sent, the peak memory of the sidecar's process, and reading a sample of its
//! `/metrics`.

use bytes::Bytes;

/// The value of the sample `name` whose labels are exactly `labels`, in a Prometheus
/// text exposition.
#[cfg(feature = "metrics")]
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let mut found: Vec<String> = rest
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            found.sort();
            (metric == name && found == wanted).then(|| value.parse().ok())?
        })
}

/// 1 MiB chunk `i` of a body made as it is sent, and the SHA-256 of `chunks` of them.
pub(crate) fn generated(
    chunks: u64,
) -> (
    impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
    String,
) {
    let chunk = |i: u64| {
        let mut bytes = vec![i as u8; 1 << 20];
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        Bytes::from(bytes)
    };
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for i in 0..chunks {
        digest.update(&chunk(i));
    }
    (chunk, hex(digest.finish().as_ref()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The most memory the process `pid` has held (its peak resident set), in bytes.
#[cfg(target_os = "linux")]
pub(crate) fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}
