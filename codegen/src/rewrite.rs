//! Points progenitor's code at `helseid`: every crate it names (serde, reqwest,
//! progenitor-client, chrono, uuid) is reached through `<runtime>::__codegen`, serde's
//! derives are told so (`#[serde(crate = "...")]`), each operation returns
//! `helseid::typed::Error`, and the client gets what `helseid` adds to every generated
//! client (the hook into the tower stack, `from_service`, tenancy, the builder).

use proc_macro2::{Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::visit_mut::VisitMut;

/// The crates progenitor's code names, reached through `<runtime>::__codegen`.
const ROOTS: [&str; 6] = [
    "progenitor_client",
    "reqwest",
    "serde",
    "serde_json",
    "chrono",
    "uuid",
];

/// Keywords after which `::x` starts a path.
const KEYWORDS: [&str; 13] = [
    "as", "dyn", "impl", "for", "in", "where", "return", "mut", "const", "static", "else", "break",
    "pub",
];

/// What the generated client is told of its API.
pub(crate) struct Client<'a> {
    pub(crate) runtime: &'a str,
    pub(crate) name: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) dpop: bool,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) required: &'a [String],
    pub(crate) builder: bool,
}

/// progenitor's `file`, rewritten for `client`.
pub(crate) fn rewrite(file: syn::File, client: &Client<'_>) -> Result<syn::File, String> {
    let runtime: TokenStream = client
        .runtime
        .parse()
        .map_err(|e| format!("`{}` is not a Rust path: {e}", client.runtime))?;
    let codegen = quote!(#runtime::__codegen);
    let tokens = reroot(quote!(#file), &codegen);
    let mut file: syn::File =
        syn::parse2(tokens).map_err(|e| format!("the rewritten code does not parse: {e}"))?;

    let serde_crate = format!("{}::__codegen::serde", client.runtime);
    SerdeCrate(serde_crate).visit_file_mut(&mut file);

    let mut items = Vec::with_capacity(file.items.len() + 4);
    for item in file.items {
        match item {
            // progenitor's `pub use progenitor_client::{ByteStream, ClientInfo, Error,
            // ResponseValue}`: `Error` is helseid's.
            syn::Item::Use(item)
                if matches!(item.vis, syn::Visibility::Public(_))
                    && quote!(#item).to_string().contains("ResponseValue") =>
            {
                items.push(syn::parse_quote! {
                    #[allow(unused_imports)]
                    pub use #codegen::{ByteStream, ClientInfo, Error, ResponseValue};
                });
            }
            syn::Item::Impl(mut block) if is_client_impl(&block) => {
                block.items = client_methods(block.items, &codegen);
                items.push(syn::Item::Impl(block));
            }
            other => items.push(other),
        }
    }
    file.items = items;

    let name = client.name;
    let scopes = client.scopes;
    let dpop = client.dpop;
    let header_names = client.headers.iter().map(|(n, _)| n.to_ascii_lowercase());
    let header_values = client.headers.iter().map(|(_, v)| v);
    let required = client.required.iter().map(|r| r.to_ascii_lowercase());
    let api_doc = format!(
        "The {} as the generator saw it: its name in errors, its scopes, DPoP, and the headers every call sends.",
        name.replace('\n', " ")
    );
    file.items.push(syn::parse_quote! {
        #[doc = #api_doc]
        pub const API: #codegen::Api = #codegen::Api {
            name: #name,
            scopes: &[#(#scopes),*],
            dpop: #dpop,
            headers: &[#((#header_names, #header_values)),*],
            required_headers: &[#(#required),*],
        };
    });
    let macro_path = if client.runtime.trim_start_matches("::") == "crate" {
        quote!(crate::__codegen_client)
    } else {
        quote!(#runtime::__codegen_client)
    };
    let builder = if client.builder {
        quote!(builder)
    } else {
        quote!(no_builder)
    };
    file.items.push(syn::parse_quote! {
        #macro_path!(#builder);
    });
    Ok(file)
}

/// Whether `block` is `impl Client { .. }`.
fn is_client_impl(block: &syn::ItemImpl) -> bool {
    block.trait_.is_none()
        && matches!(&*block.self_ty, syn::Type::Path(p) if p.path.is_ident("Client"))
}

/// The methods of an `impl Client`: `new` removed (the builder makes clients),
/// `new_with_client` private to the crate, and each operation split into a private
/// `raw_<name>` (progenitor's, returning progenitor's error) and the public `<name>`,
/// which returns helseid's.
fn client_methods(methods: Vec<syn::ImplItem>, codegen: &TokenStream) -> Vec<syn::ImplItem> {
    let mut out = Vec::with_capacity(methods.len() * 2);
    for member in methods {
        let syn::ImplItem::Fn(mut function) = member else {
            out.push(member);
            continue;
        };
        let name = function.sig.ident.to_string();
        if name == "new" {
            continue;
        }
        if name == "new_with_client" {
            function.vis = syn::parse_quote!(pub(crate));
            function.attrs.retain(|a| !a.path().is_ident("doc"));
            out.push(syn::ImplItem::Fn(function));
            continue;
        }
        if function.sig.asyncness.is_none() {
            out.push(syn::ImplItem::Fn(function));
            continue;
        }
        let mut raw = function.clone();
        raw.sig.ident = format_ident!("raw_{}", name);
        raw.vis = syn::Visibility::Inherited;
        raw.attrs.retain(|a| !a.path().is_ident("doc"));
        RawOperation(codegen.clone()).visit_impl_item_fn_mut(&mut raw);

        let arguments: Vec<TokenStream> = function
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                syn::FnArg::Typed(typed) => match &*typed.pat {
                    syn::Pat::Ident(ident) => {
                        let ident = &ident.ident;
                        Some(quote!(#ident))
                    }
                    _ => None,
                },
                syn::FnArg::Receiver(_) => None,
            })
            .collect();
        if let syn::ReturnType::Type(_, ty) = &mut function.sig.output {
            helseid_error(ty, codegen);
        }
        let raw_name = &raw.sig.ident;
        function.block = syn::parse_quote! {{
            match self.#raw_name(#(#arguments),*).await {
                Ok(value) => Ok(value),
                Err(error) => Err(#codegen::Error::from_progenitor(&API, #name, error).await),
            }
        }};
        out.push(syn::ImplItem::Fn(raw));
        out.push(syn::ImplItem::Fn(function));
    }
    out
}

/// `Result<T, Error<E>>` becomes `Result<T, helseid::typed::Error>`.
fn helseid_error(ty: &mut syn::Type, codegen: &TokenStream) {
    let syn::Type::Path(path) = ty else { return };
    let Some(last) = path.path.segments.last_mut() else {
        return;
    };
    if last.ident != "Result" {
        return;
    }
    if let syn::PathArguments::AngleBracketed(arguments) = &mut last.arguments
        && let Some(syn::GenericArgument::Type(error)) = arguments.args.iter_mut().nth(1)
    {
        *error = syn::parse_quote!(#codegen::Error);
    }
}

/// Inside a `raw_` operation: `Error` is progenitor's; the request is built with
/// helseid's `RequestBuilder` instead of reqwest's (`self.client.get(url)`), sent with
/// `self.inner.send(request)` instead of the hooks, and the answer read with helseid's
/// `from_response`, `empty` and `stream` (which read an `http::Response` and do not copy
/// its headers); progenitor's `api-version` header (the document's version) is not
/// added.
struct RawOperation(TokenStream);

/// reqwest's `Client` methods that start a request, and their HTTP methods.
const REQUEST_METHODS: [(&str, &str); 6] = [
    ("get", "GET"),
    ("post", "POST"),
    ("put", "PUT"),
    ("patch", "PATCH"),
    ("delete", "DELETE"),
    ("head", "HEAD"),
];

/// Whether `expr` is `self.<field>`.
fn is_self_field(expr: &syn::Expr, field: &str) -> bool {
    matches!(expr, syn::Expr::Field(f)
        if matches!(&f.member, syn::Member::Named(m) if m == field)
            && matches!(&*f.base, syn::Expr::Path(p) if p.path.is_ident("self")))
}

fn is_self(expr: &syn::Expr) -> bool {
    matches!(expr, syn::Expr::Path(p) if p.path.is_ident("self"))
}

impl VisitMut for RawOperation {
    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        // progenitor's `header_map.append(.. "api-version", Self::api_version())`.
        block.stmts.retain(|stmt| {
            !quote!(#stmt)
                .to_string()
                .replace(' ', "")
                .contains("Self::api_version()")
        });
        syn::visit_mut::visit_block_mut(self, block);
    }

    fn visit_expr_mut(&mut self, expr: &mut syn::Expr) {
        syn::visit_mut::visit_expr_mut(self, expr);
        let codegen = &self.0;
        match expr {
            syn::Expr::MethodCall(call) if is_self_field(&call.receiver, "client") => {
                let name = call.method.to_string();
                let args = &call.args;
                if let Some((_, method)) = REQUEST_METHODS.iter().find(|(m, _)| *m == name) {
                    let method = format_ident!("{}", method);
                    *expr = syn::parse_quote!(
                        #codegen::RequestBuilder::new(#codegen::http::Method::#method, #args)
                    );
                } else if name == "request" {
                    *expr = syn::parse_quote!(#codegen::RequestBuilder::new(#args));
                }
            }
            syn::Expr::MethodCall(call) if is_self(&call.receiver) => {
                let name = call.method.to_string();
                if name == "exec" {
                    let request = call.args.first().cloned();
                    *expr = syn::parse_quote!(self.inner.send(#request));
                } else if name == "pre" || name == "post" {
                    *expr = syn::parse_quote!(#codegen::no_hook());
                }
            }
            syn::Expr::Call(call) => {
                let syn::Expr::Path(function) = &*call.func else {
                    return;
                };
                let segments: Vec<String> = function
                    .path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect();
                let last = segments.last().map(String::as_str);
                let before = segments.len().checked_sub(2).map(|i| segments[i].as_str());
                match (before, last) {
                    (Some("HeaderMap"), Some("with_capacity")) => {
                        *expr = syn::parse_quote!(#codegen::http::HeaderMap::new());
                    }
                    (_, Some("UnexpectedResponse")) => {
                        if let Some(response) = call.args.first_mut() {
                            *response = syn::parse_quote!(#codegen::into_reqwest(#response));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        syn::visit_mut::visit_path_mut(self, path);
        if path.leading_colon.is_some() {
            return;
        }
        let codegen = &self.0;
        let first = path.segments.first().map(|s| s.ident.to_string());
        if first.as_deref() == Some("Error") {
            let rest = &path.segments;
            *path = syn::parse_quote!(#codegen::progenitor_client::#rest);
        } else if path.segments.len() == 2
            && first.as_deref() == Some("ResponseValue")
            && path.segments[1].arguments.is_none()
        {
            let function = &path.segments[1].ident;
            if ["from_response", "empty", "stream"].contains(&function.to_string().as_str()) {
                *path = syn::parse_quote!(#codegen::#function);
            }
        }
    }
}

/// Adds `#[serde(crate = "...")]` to every type deriving serde's traits.
struct SerdeCrate(String);

impl SerdeCrate {
    fn add(&self, attrs: &mut Vec<syn::Attribute>) {
        let derives_serde = attrs.iter().any(|a| {
            a.path().is_ident("derive") && {
                let text = quote!(#a).to_string();
                text.contains("Serialize") || text.contains("Deserialize")
            }
        });
        if derives_serde {
            let path = &self.0;
            attrs.push(syn::parse_quote!(#[serde(crate = #path)]));
        }
    }
}

impl VisitMut for SerdeCrate {
    fn visit_item_struct_mut(&mut self, item: &mut syn::ItemStruct) {
        self.add(&mut item.attrs);
        syn::visit_mut::visit_item_struct_mut(self, item);
    }

    fn visit_item_enum_mut(&mut self, item: &mut syn::ItemEnum) {
        self.add(&mut item.attrs);
        syn::visit_mut::visit_item_enum_mut(self, item);
    }
}

/// `tokens` with every path that starts at one of the [`ROOTS`] (`serde::x`,
/// `::serde::x`) starting at `codegen` instead.
fn reroot(tokens: TokenStream, codegen: &TokenStream) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out: Vec<TokenTree> = Vec::with_capacity(trees.len());
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => {
                let mut rerooted = Group::new(group.delimiter(), reroot(group.stream(), codegen));
                rerooted.set_span(group.span());
                out.push(TokenTree::Group(rerooted));
            }
            TokenTree::Ident(ident)
                if ROOTS.contains(&ident.to_string().as_str()) && is_path_sep(&trees, i + 1) =>
            {
                let after_sep = i >= 2 && is_path_sep(&trees, i - 2);
                if after_sep {
                    let leading = i < 3
                        || match &trees[i - 3] {
                            // A keyword, or a lifetime's name (`&'a ::uuid::Uuid`).
                            TokenTree::Ident(before) => {
                                KEYWORDS.contains(&before.to_string().as_str())
                                    || (i >= 4
                                        && matches!(&trees[i - 4], TokenTree::Punct(p) if p.as_char() == '\''))
                            }
                            // Punctuation, or a group (`pub(crate) ::x`).
                            _ => true,
                        };
                    if !leading {
                        out.push(tree.clone());
                        continue;
                    }
                    // Drop the leading `::`: `codegen` is a path of its own.
                    out.truncate(out.len() - 2);
                }
                out.extend(codegen.clone());
                out.push(TokenTree::Punct(Punct::new(':', Spacing::Joint)));
                out.push(TokenTree::Punct(Punct::new(':', Spacing::Alone)));
                out.push(TokenTree::Ident(Ident::new(
                    &ident.to_string(),
                    Span::call_site(),
                )));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// Whether `trees[at..]` starts with `::`.
fn is_path_sep(trees: &[TokenTree], at: usize) -> bool {
    matches!(
        (trees.get(at), trees.get(at + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::reroot;

    #[test]
    fn every_path_into_the_roots_is_rerooted_and_nothing_else() {
        let codegen = quote!(::helseid::__codegen);
        let tokens = quote! {
            use progenitor_client::{encode_path, ClientHooks};
            #[derive(::serde::Deserialize, ::serde::Serialize)]
            struct A { x: ::std::option::Option<::serde_json::Value>, y: Vec<::uuid::Uuid> }
            struct B(pub ::serde_json::Map<String, ::serde_json::Value>);
            struct C(pub(crate) ::serde_json::Value);
            fn g<'a>(x: &'a ::uuid::Uuid) {}
            fn f() -> ::chrono::NaiveDate { <T as ::serde::Deserialize>::x(); reqwest::Client::new(); a::serde::b() }
        };
        let text = reroot(tokens, &codegen).to_string().replace(' ', "");
        assert!(
            text.contains("use::helseid::__codegen::progenitor_client::{"),
            "{text}"
        );
        assert!(
            text.contains("derive(::helseid::__codegen::serde::Deserialize"),
            "{text}"
        );
        assert!(
            text.contains("Option<::helseid::__codegen::serde_json::Value>"),
            "{text}"
        );
        assert!(
            text.contains("Vec<::helseid::__codegen::uuid::Uuid>"),
            "{text}"
        );
        assert!(
            text.contains("&'a::helseid::__codegen::uuid::Uuid"),
            "{text}"
        );
        assert!(
            text.contains("->::helseid::__codegen::chrono::NaiveDate"),
            "{text}"
        );
        assert!(
            text.contains("<Tas::helseid::__codegen::serde::Deserialize>"),
            "{text}"
        );
        assert!(
            text.contains(";::helseid::__codegen::reqwest::Client::new()"),
            "{text}"
        );
        assert!(text.contains("a::serde::b()"), "{text}");
        assert!(
            text.contains("(pub::helseid::__codegen::serde_json::Map<"),
            "{text}"
        );
        assert!(
            text.contains("(pub(crate)::helseid::__codegen::serde_json::Value)"),
            "{text}"
        );
        assert!(text.contains("::std::option::Option"), "{text}");
    }
}
