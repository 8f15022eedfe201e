//! What the callgrind harnesses share: running this bench's own binary under valgrind
//! for one variant and reading the instructions it counted.

use std::process::Command;

/// The instructions callgrind counted in the functions whose names contain `measured`
/// while this executable ran `measure <variant>`; `name` keeps the output files of
/// different harnesses apart.
pub(crate) fn instructions(name: &str, variant: &str) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::env::temp_dir().join(format!(
        "helseid-{name}-{}-{variant}.out",
        std::process::id()
    ));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--toggle-collect=*measured*")
        .arg("--quiet")
        .arg(&exe)
        .arg("measure")
        .arg(variant)
        .status()
        .expect("valgrind (install valgrind)");
    assert!(status.success(), "valgrind {variant}: {status}");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals: ")
                .or(line.strip_prefix("summary: "))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("callgrind totals")
}
