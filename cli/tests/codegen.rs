//! `helseid codegen`: the binary writes the same code the generator gives a build.rs,
//! its notes on stderr; bad input is one line and exit 1, a bad flag exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn helseid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helseid"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn the_cli_writes_what_the_generator_gives_a_build_script() {
    let spec = root().join("openapi/msh-api-v2.json");
    let dir = std::env::temp_dir().join(format!("helseid-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("msh.rs");
    let output = helseid(&[
        "codegen",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--scope",
        "nhn:msh/api",
        "--dpop",
        "--header",
        "api-version=2",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("note: required header `nhn-source-system` set once on the client"),
        "{stderr}"
    );
    let expected = helseid_codegen::Api::from_file(&spec)
        .unwrap()
        .scopes(["nhn:msh/api"])
        .dpop(true)
        .default_header("api-version", "2")
        .generate_code()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected.code);
    std::fs::remove_dir_all(&dir).unwrap();

    // To standard output, and what is left out is said on stderr, by name.
    let melde = root().join("codegen/tests/documents/melde-api-v2.json");
    let output = helseid(&["codegen", melde.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("pub async fn get_dialog_by_report_ref"));
    assert!(
        text(&output.stderr).contains("warning: left out GET /api/v2/dialog/events"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_document_it_cannot_read_is_one_line_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("helseid-codegen-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let v31 = dir.join("api.yaml");
    std::fs::write(
        &v31,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
    )
    .unwrap();
    let swagger = dir.join("swagger.json");
    std::fs::write(&swagger, r#"{"swagger": "2.0", "info": {}, "paths": {}}"#).unwrap();
    for (spec, expected) in [
        (
            v31.to_str().unwrap().to_owned(),
            "is OpenAPI 3.1.0: only OpenAPI 3.0.x is read",
        ),
        (
            swagger.to_str().unwrap().to_owned(),
            "is Swagger 2.0: only OpenAPI 3.0.x is read",
        ),
        (
            dir.join("none.json").to_str().unwrap().to_owned(),
            "cannot read",
        ),
    ] {
        let output = helseid(&["codegen", &spec]);
        assert_eq!(output.status.code(), Some(1), "{spec}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_header_flag_is_a_usage_error() {
    let spec = root().join("openapi/cpe.json");
    for header in ["api-version", "bad name=1", "=2"] {
        let output = helseid(&["codegen", spec.to_str().unwrap(), "--header", header]);
        assert_eq!(output.status.code(), Some(2), "{header}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("--header"), "{stderr}");
    }
}
