//! NHN's CommunicationParty API v2 document, as published, goes through the crate's
//! generation (`build/generate.rs`: normalisation, then progenitor with build.rs's
//! settings) and gives the client `openapi/cpapi.json` gives: the same methods with the
//! same signatures, and the same types. So NHN's document dropped in place of
//! cpapi.json builds the crate unchanged.
//!
//! NHN's document is read from `HELSEID_NHN_CPAPI_SPEC` (see tests/cpapi_contract.rs);
//! without it, the test says it was skipped. cpapi.json and cpe.json are generated
//! either way.

#[allow(dead_code)]
#[path = "../build/normalise.rs"]
mod normalise;

#[path = "../build/generate.rs"]
mod generate;

use std::path::Path;

use serde_json::Value;

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn shipped(name: &str) -> Value {
    read(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("openapi")
            .join(name),
    )
}

/// What a generated client offers, without docs and bodies: the signature of each
/// method of `Client`, and each type of `types` as declared.
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
                        no_docs(&mut function.attrs);
                        // The signature only.
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
fn the_shipped_documents_generate() {
    for (name, module) in [("cpe.json", "crate::cpe"), ("cpapi.json", "crate::cpapi")] {
        let (code, _) = generate::code(name, shipped(name), module).expect("a client");
        assert!(code.contains("pub struct Client"), "{name}");
    }
    let (code, _) =
        generate::code("cpapi.json", shipped("cpapi.json"), "crate::cpapi").expect("a client");
    let surface = surface(&code);
    let methods = surface
        .iter()
        .filter(|s| s.contains("pub async fn"))
        .count();
    assert_eq!(methods, 11, "{surface:#?}");
}

#[test]
fn nhns_document_as_published_generates_the_same_client() {
    let Some(path) = std::env::var_os("HELSEID_NHN_CPAPI_SPEC") else {
        eprintln!("skipped: HELSEID_NHN_CPAPI_SPEC is not set (it names NHN's published document)");
        return;
    };
    let nhn = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path));
    let (theirs, notes) =
        generate::code("NHN's document", nhn, "crate::cpapi").expect("NHN's document generates");
    assert_eq!(notes.iter().filter(|n| n.contains(": named `")).count(), 11);
    let (ours, _) =
        generate::code("cpapi.json", shipped("cpapi.json"), "crate::cpapi").expect("a client");
    let (theirs, ours) = (surface(&theirs), surface(&ours));
    let only_theirs: Vec<&String> = theirs.iter().filter(|s| !ours.contains(s)).collect();
    let only_ours: Vec<&String> = ours.iter().filter(|s| !theirs.contains(s)).collect();
    assert!(
        only_theirs.is_empty() && only_ours.is_empty(),
        "only from NHN's document:\n{only_theirs:#?}\nonly from cpapi.json:\n{only_ours:#?}"
    );
    assert!(theirs.len() > 11 + 34, "{}", theirs.len());
}
