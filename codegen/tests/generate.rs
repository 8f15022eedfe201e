//! NHN's OpenAPI documents, as published, go through the generator and give clients:
//! the two the `helseid` crate ships (`openapi/`), and Meldingstjener (MSH) v2,
//! Melde.no v2 and Persontjenesten v2, kept here byte for byte as their owners publish
//! them (and held so against `../shared/reference/openapi/` when it is there). That
//! each generated client compiles is proven by `examples/any-api`, whose build.rs
//! generates all five and includes them. And NHN's own CP API v2 document dropped in
//! place of `openapi/cpapi.json` gives the same client.

use std::path::{Path, PathBuf};

use helseid_codegen::Api;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// The five documents: where each is kept, and the operations its client has.
fn documents() -> Vec<(PathBuf, usize)> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documents");
    vec![
        (root().join("openapi/cpe.json"), 3),
        (root().join("openapi/cpapi.json"), 11),
        (root().join("openapi/msh-api-v2.json"), 8),
        // 14, less the server-sent-events operation, which has no success response.
        (here.join("melde-api-v2.json"), 13),
        (here.join("persontjenesten-api-v2.yaml"), 20),
    ]
}

/// The signatures of `Client`'s public methods, and each type of `types` as declared,
/// without docs and bodies.
fn surface(code: &str) -> Vec<String> {
    let file: syn::File = syn::parse_str(code).expect("generated code parses");
    let mut surface = Vec::new();
    let no_docs = |attrs: &mut Vec<syn::Attribute>| attrs.retain(|a| !a.path().is_ident("doc"));
    for item in file.items {
        match item {
            syn::Item::Impl(block)
                if block.trait_.is_none()
                    && matches!(&*block.self_ty, syn::Type::Path(p) if p.path.is_ident("Client")) =>
            {
                for member in block.items {
                    if let syn::ImplItem::Fn(mut function) = member {
                        if !matches!(function.vis, syn::Visibility::Public(_)) {
                            continue;
                        }
                        no_docs(&mut function.attrs);
                        surface.push(unparse(syn::Item::Fn(syn::ItemFn {
                            attrs: function.attrs,
                            vis: function.vis,
                            sig: function.sig,
                            block: Box::new(syn::parse_str("{}").expect("a block")),
                        })));
                    }
                }
            }
            syn::Item::Mod(module) if module.ident == "types" => {
                for item in module.content.map(|(_, items)| items).unwrap_or_default() {
                    match item {
                        syn::Item::Struct(mut declared) => {
                            no_docs(&mut declared.attrs);
                            for field in &mut declared.fields {
                                no_docs(&mut field.attrs);
                            }
                            surface.push(unparse(syn::Item::Struct(declared)));
                        }
                        syn::Item::Enum(mut declared) => {
                            no_docs(&mut declared.attrs);
                            for variant in &mut declared.variants {
                                no_docs(&mut variant.attrs);
                            }
                            surface.push(unparse(syn::Item::Enum(declared)));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    surface.sort();
    surface
}

fn unparse(item: syn::Item) -> String {
    prettyplease::unparse(&syn::File {
        shebang: None,
        attrs: Vec::new(),
        items: vec![item],
    })
}

#[test]
fn the_five_documents_generate_unchanged() {
    for (path, operations) in documents() {
        let generated = Api::from_file(&path)
            .expect("a document")
            .generate_code()
            .expect("a client");
        let methods = surface(&generated.code)
            .iter()
            .filter(|s| s.contains("pub async fn"))
            .count();
        assert_eq!(methods, operations, "{}", path.display());
        // Every method returns helseid's error, and nothing reaches a crate but
        // through helseid.
        assert!(
            !generated.code.contains(" ::serde::") && !generated.code.contains(" ::uuid::"),
            "{}",
            path.display()
        );
        assert!(
            generated
                .code
                .contains("::helseid::__codegen_client!(builder);")
        );
    }
}

#[test]
fn what_cannot_be_expressed_is_left_out_by_name() {
    let (melde, _) = &documents()[3];
    let generated = Api::from_file(melde).unwrap().generate_code().unwrap();
    assert_eq!(
        generated.left_out,
        [
            "GET /api/v2/dialog/events: it declares no success response (a server-sent-events stream, say)"
        ]
    );
    assert!(
        generated
            .notes_text()
            .contains("left out GET /api/v2/dialog/events")
    );
    // The multipart operation keeps its JSON form; the dotted schemas their last name.
    assert!(
        generated
            .code
            .contains("pub async fn post_report_adverse_incident_multipart")
    );
    assert!(generated.code.contains("pub struct BaseRespons"));
    assert!(
        generated
            .notes
            .iter()
            .any(|n| n == "schema `Melde.DTO.Response.BaseRespons` renamed `BaseRespons`")
    );
}

#[test]
fn required_headers_are_set_once_on_the_client() {
    let msh = root().join("openapi/msh-api-v2.json");
    let generated = Api::from_file(&msh)
        .unwrap()
        .scopes(["nhn:msh/api"])
        .dpop(true)
        .default_header("api-version", "2")
        .generate_code()
        .unwrap();
    let code = generated.code.replace(char::is_whitespace, "");
    assert!(code.contains(r#"headers:&[("api-version","2")]"#), "{code}");
    assert!(code.contains(r#"required_headers:&["nhn-source-system"]"#));
    assert!(code.contains(r#"scopes:&["nhn:msh/api"]"#));
    assert!(code.contains("dpop:true"));
    // No method takes them.
    assert!(!code.contains("api_version:&"));
    assert!(!code.contains("nhn_source_system"));

    // Persontjenesten's `api-version` has a default in the document: it is used.
    let (persontjenesten, _) = &documents()[4];
    let generated = Api::from_file(persontjenesten)
        .unwrap()
        .generate_code()
        .unwrap();
    let code = generated.code.replace(char::is_whitespace, "");
    assert!(code.contains(r#"headers:&[("api-version","2")]"#), "{code}");
    assert!(code.contains("required_headers:&[]"));
    // Operation ids with spaces and dashes, and none at all, give method names.
    assert!(code.contains("pubasyncfnevent_no_legal_basis<"));
    assert!(code.contains("pubasyncfnget_no_legal_basis_event_latest<"));
}

#[test]
fn yaml_and_json_read_the_same() {
    let json = std::fs::read_to_string(root().join("openapi/cpe.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // JSON is YAML: the same document through the YAML reader.
    let as_yaml = format!(
        "# a comment\n{}",
        serde_json::to_string_pretty(&value).unwrap()
    );
    let from_json = Api::from_text("cpe.json", &json)
        .unwrap()
        .generate_code()
        .unwrap();
    let from_yaml = Api::from_text("cpe.json", &as_yaml)
        .unwrap()
        .generate_code()
        .unwrap();
    assert_eq!(from_json.code, from_yaml.code);
}

#[test]
fn other_versions_are_refused_in_one_line_naming_them() {
    let e = Api::from_text(
        "api.yaml",
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "api.yaml is OpenAPI 3.1.0: only OpenAPI 3.0.x is read (progenitor); ask the API's owner for its 3.0 document, or convert it to 3.0"
    );
    let e = Api::from_text("api.json", r#"{"swagger": "2.0", "info": {}, "paths": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("api.json is Swagger 2.0: only OpenAPI 3.0.x is read"),
        "{e}"
    );
    for (text, expected) in [
        ("{", "api is not JSON"),
        ("a: [1", "api is not YAML"),
        (
            "{}",
            "api is not an OpenAPI document: it has no `openapi` version",
        ),
    ] {
        let e = Api::from_text("api", text).unwrap_err().to_string();
        assert!(e.starts_with(expected), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = Api::from_file("no/such/file.json").unwrap_err().to_string();
    assert!(e.starts_with("cannot read no/such/file.json"), "{e}");
}

#[test]
fn the_copies_are_the_documents_as_published() {
    let shared = root().join("../shared/reference/openapi");
    if !shared.is_dir() {
        eprintln!("skipped: {} is not there", shared.display());
        return;
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documents");
    for (copy, name) in [
        (root().join("openapi/msh-api-v2.json"), "msh-api-v2.json"),
        (here.join("melde-api-v2.json"), "melde-api-v2.json"),
        (
            here.join("persontjenesten-api-v2.yaml"),
            "persontjenesten-api-v2.yaml",
        ),
    ] {
        let ours = std::fs::read(&copy).unwrap();
        let theirs = std::fs::read(shared.join(name)).unwrap();
        assert!(
            ours == theirs,
            "{} differs from the published {name}",
            copy.display()
        );
    }
}

#[test]
fn nhns_document_as_published_generates_the_same_client() {
    let Some(path) = std::env::var_os("HELSEID_NHN_CPAPI_SPEC") else {
        eprintln!("skipped: HELSEID_NHN_CPAPI_SPEC is not set (it names NHN's published document)");
        return;
    };
    let theirs = Api::from_file(root().join(path))
        .unwrap()
        .generate_code()
        .expect("NHN's document generates");
    assert_eq!(
        theirs
            .notes
            .iter()
            .filter(|n| n.contains(": named `"))
            .count(),
        11
    );
    let ours = Api::from_file(root().join("openapi/cpapi.json"))
        .unwrap()
        .generate_code()
        .unwrap();
    let (theirs, ours) = (surface(&theirs.code), surface(&ours.code));
    let only_theirs: Vec<&String> = theirs.iter().filter(|s| !ours.contains(s)).collect();
    let only_ours: Vec<&String> = ours.iter().filter(|s| !theirs.contains(s)).collect();
    assert!(
        only_theirs.is_empty() && only_ours.is_empty(),
        "only from NHN's document:\n{only_theirs:#?}\nonly from cpapi.json:\n{only_ours:#?}"
    );
    // Its 11 operations and 34 schemas.
    assert_eq!(theirs.len(), 11 + 34, "{theirs:#?}");
}
