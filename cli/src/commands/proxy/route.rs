//! `--route`: a path prefix, an upstream URL and its options; and the upstream URL of a
//! request.

use std::net::IpAddr;

use helseid::text::escape;
use http::Uri;
use http::header::HeaderName;
use http::uri::{Authority, Scheme};

/// One `--route`.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    /// The path prefix, without a trailing slash (`/` for everything).
    pub(crate) prefix: String,
    pub(crate) upstream: Upstream,
    /// `None`: the configuration's scopes.
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) dpop: bool,
}

/// Where a route's requests go.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// The URL's path without a trailing slash (empty for the root).
    pub(crate) path: String,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

const ROUTE_FORM: &str =
    "a route is PREFIX=URL[,scope=SCOPE]...[,dpop], as /cpe=https://cpe.test.grunndata.nhn.no";

/// Parses `PREFIX=URL[,scope=SCOPE]...[,dpop]`.
pub(crate) fn parse_route(text: &str) -> Result<Route, String> {
    let (prefix, rest) = text.split_once('=').ok_or(ROUTE_FORM)?;
    if !prefix.starts_with('/')
        || prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "the prefix must be a path that starts with /: {ROUTE_FORM}"
        ));
    }
    let trimmed = prefix.trim_end_matches('/');
    let prefix = if trimmed.is_empty() { "/" } else { trimmed };
    if prefix == "/healthz" {
        return Err("/healthz is the proxy's own health check: choose another prefix".into());
    }
    if cfg!(feature = "metrics") && prefix == "/metrics" {
        return Err("/metrics is where the proxy serves its metrics: choose another prefix".into());
    }
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default();
    let upstream = parse_upstream(url)?;
    let mut scopes: Option<Vec<String>> = None;
    let mut dpop = false;
    for option in parts {
        match option.split_once('=') {
            None if option == "dpop" => dpop = true,
            Some(("scope", scope))
                if !scope.is_empty() && scope.chars().all(|c| c.is_ascii_graphic() && c != '"') =>
            {
                scopes.get_or_insert_with(Vec::new).push(scope.to_owned());
            }
            Some(("scope", _)) => {
                return Err("scope= needs a scope (printable ASCII, no spaces)".into());
            }
            _ => {
                return Err(format!(
                    "unknown route option `{}`: the options are scope=SCOPE and dpop",
                    escape(option)
                ));
            }
        }
    }
    Ok(Route {
        prefix: prefix.to_owned(),
        upstream,
        scopes,
        dpop,
    })
}

/// Parses an upstream URL: https, or http to a loopback address, without a query.
pub(crate) fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let not_url = || format!("`{}` is not an http(s) URL: {ROUTE_FORM}", escape(url));
    let uri: Uri = url.parse().map_err(|_| not_url())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(not_url());
    };
    if uri.query().is_some() || url.contains('#') {
        return Err(format!(
            "the upstream `{}` has a query or fragment: give the URL the paths go under",
            escape(url)
        ));
    }
    if authority.as_str().contains('@') {
        return Err("the upstream URL must not carry credentials".into());
    }
    if *scheme == Scheme::HTTP {
        if !is_loopback_host(authority.host()) {
            return Err(format!(
                "the upstream `{}` is http to a host that is not loopback: the token would cross the network in the clear (use https)",
                escape(url)
            ));
        }
    } else if *scheme != Scheme::HTTPS {
        return Err(not_url());
    }
    Ok(Upstream {
        scheme: scheme.clone(),
        authority: authority.clone(),
        path: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// Whether `host` (as a URL has it, IPv6 in brackets) is a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| "not a header name".to_owned())
}

/// The upstream URL of a request to `route`: the route's prefix replaced by the
/// upstream's path, the query kept. A path with `.` or `..` segments is refused (it
/// could climb out of the upstream's path).
pub(crate) fn upstream_uri(route: &Route, incoming: &Uri) -> Result<Uri, &'static str> {
    let path = incoming.path();
    let rest = if route.prefix == "/" {
        path
    } else {
        &path[route.prefix.len().min(path.len())..]
    };
    let dot = |segment: &str| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    };
    if rest.split('/').any(dot) {
        return Err("the path has a `.` or `..` segment");
    }
    let upstream = &route.upstream;
    let mut target = format!("{}{rest}", upstream.path);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(query) = incoming.query() {
        target.push('?');
        target.push_str(query);
    }
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| "the path cannot be sent on")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_with_their_options_and_bad_ones_say_why() {
        let route =
            parse_route("/cpapi/=https://cpapi.test/v2/,scope=a:b,scope=c,dpop").expect("route");
        assert_eq!(route.prefix, "/cpapi");
        assert_eq!(route.upstream.to_string(), "https://cpapi.test/v2");
        assert_eq!(route.scopes, Some(vec!["a:b".to_owned(), "c".to_owned()]));
        assert!(route.dpop);
        let route = parse_route("/=http://127.0.0.1:9000").expect("route");
        assert_eq!(route.prefix, "/");
        assert!(!route.dpop && route.scopes.is_none());
        for (bad, says) in [
            ("/x", "PREFIX=URL"),
            ("x=https://a.test", "starts with /"),
            ("/x=not a url", "not an http(s) URL"),
            ("/x=ftp://a.test", "not an http(s) URL"),
            ("/x=https://a.test?q=1", "query"),
            ("/x=http://api.example.no", "in the clear"),
            ("/x=https://a.test,gzip", "unknown route option `gzip`"),
            ("/x=https://a.test,scope=", "scope= needs"),
            ("/healthz=https://a.test", "health"),
        ] {
            let error = parse_route(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_prefix_is_replaced_by_the_upstream_path_and_the_query_kept() {
        let route = parse_route("/cpe=https://cpe.test/base").expect("route");
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert_eq!(
            upstream_uri(&route, &uri("/cpe/CommunicationPartyEvents?a=1&b=2")).expect("ok"),
            "https://cpe.test/base/CommunicationPartyEvents?a=1&b=2"
        );
        assert_eq!(
            upstream_uri(&route, &uri("/cpe")).expect("ok"),
            "https://cpe.test/base"
        );
        let root = parse_route("/cpe=https://cpe.test").expect("route");
        assert_eq!(
            upstream_uri(&root, &uri("/cpe?x")).expect("ok"),
            "https://cpe.test/?x"
        );
        assert!(upstream_uri(&route, &uri("/cpe/../admin")).is_err());
        assert!(upstream_uri(&route, &uri("/cpe/%2E%2e/admin")).is_err());
    }
}
