//! Files only their owner may read (keys, tokens), replaced atomically: written in full
//! to a new file beside the target, flushed, then renamed over it, so that a crash
//! leaves the old file or the new one, never half of either.
//!
//! [`write`](fn@write) is public so that tools built on the crate (the `helseid` command line
//! among them) write their secret files the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `contents` to a new owner-only file beside `path` (a hidden name that no
/// other writer picks), flushed to disk; returns its path. `path` is untouched.
pub(crate) fn stage(path: &Path, contents: &[u8]) -> std::io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let mut random = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut random);
    let temp = dir.join(format!(".{name}.{:016x}.tmp", u64::from_le_bytes(random)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

/// Renames the staged file `temp` over `path` and flushes the directory.
pub(crate) fn commit(temp: &Path, path: &Path) -> std::io::Result<()> {
    if let Err(e) = std::fs::rename(temp, path) {
        let _ = std::fs::remove_file(temp);
        return Err(e);
    }
    sync_dir(path);
    Ok(())
}

/// Flushes the directory of `path`: a rename is durable once its directory is.
pub(crate) fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// Replaces `path` with `contents`, owner-only and atomically: a new file created
/// exclusively with mode 0600 beside `path` (so a symbolic link at a predictable name is
/// never followed), written in full and flushed, then renamed over `path`.
///
/// # Errors
/// The I/O error of the step that failed; `path` is then untouched.
///
/// # Example
/// ```no_run
/// helseid::private_file::write("token-set.json".as_ref(), b"{}")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temp = stage(path, contents)?;
    commit(&temp, path)
}
