//! A generated call's request and answer without reqwest: what `helseid-codegen` puts
//! in place of progenitor's `self.client.get(url)...build()` and `self.exec(..)`, so a
//! typed call costs little more than the same call by hand (reqwest would parse the
//! URL, and the answer's placeholder URL, once more per call). reqwest's types remain
//! for what progenitor's error type holds (an unexpected answer, a stream), made on
//! those paths only.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use progenitor_client::{Error as ProgenitorError, ResponseValue};
use serde::Serialize;

use super::Stack;

/// A generated call's answer, as the stack gives it.
pub type Answer = http::Response<reqwest::Body>;

/// A request of a generated call, as progenitor's code builds it with reqwest's
/// `RequestBuilder`: the same methods, without reqwest. A mistake (a URL that is not
/// one, a body that does not serialise) is kept and reported when the call is sent.
#[derive(Debug)]
pub struct RequestBuilder {
    method: http::Method,
    url: String,
    query: String,
    headers: http::HeaderMap,
    body: Bytes,
    error: Option<String>,
}

/// A request ready for [`Stack::send`], or why it cannot be sent.
#[derive(Debug)]
pub struct Prepared(Result<http::Request<Full<Bytes>>, crate::Error>);

impl RequestBuilder {
    /// `method url`.
    pub fn new(method: http::Method, url: String) -> Self {
        RequestBuilder {
            method,
            url,
            query: String::new(),
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            error: None,
        }
    }

    fn fail(&mut self, error: String) {
        self.error.get_or_insert(error);
    }

    /// Adds a header.
    pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Adds headers; progenitor's `api-version` (the document's version, not the
    /// API's) is not sent: a client that needs one sends it as a default header.
    pub fn headers(mut self, headers: http::HeaderMap) -> Self {
        // A name comes with the first of its values only.
        let mut current: Option<http::HeaderName> = None;
        for (name, value) in headers {
            if name.is_some() {
                current = name;
            }
            if let Some(name) = current.as_ref().filter(|n| *n != "api-version") {
                self.headers.append(name.clone(), value);
            }
        }
        self
    }

    /// Adds query parameters, serialised as reqwest does (`serde_urlencoded`).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        let mut pairs = form_urlencoded::Serializer::for_suffix(std::mem::take(&mut self.query), 0);
        if let Err(e) = query.serialize(serde_urlencoded::Serializer::new(&mut pairs)) {
            self.fail(format!("a query parameter cannot be sent: {e}"));
        }
        self.query = pairs.finish();
        self
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Bytes::from(bytes);
                if !self.headers.contains_key(http::header::CONTENT_TYPE) {
                    self.headers.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                }
            }
            Err(e) => self.fail(format!("the body cannot be sent as JSON: {e}")),
        }
        self
    }

    /// A body of bytes or text (not a stream: the stack sends whole bodies).
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        let body: reqwest::Body = body.into();
        match body.as_bytes() {
            Some(bytes) => self.body = Bytes::copy_from_slice(bytes),
            None => self
                .fail("a streaming request body cannot be sent through the tower stack".to_owned()),
        }
        self
    }

    /// A form-urlencoded body.
    pub fn form_urlencoded<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, Infallible> {
        match serde_urlencoded::to_string(body) {
            Ok(text) => {
                self.body = Bytes::from(text);
                self.headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            Err(e) => self.fail(format!("the form cannot be sent: {e}")),
        }
        Ok(self)
    }

    /// The request (never fails here: a mistake is reported by [`Stack::send`]).
    pub fn build(self) -> Result<Prepared, Infallible> {
        if let Some(error) = self.error {
            return Ok(Prepared(Err(crate::Error::config("request", error))));
        }
        let uri = if self.query.is_empty() {
            http::Uri::try_from(self.url)
        } else {
            let mut url = self.url;
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&self.query);
            http::Uri::try_from(url)
        };
        let uri = match uri {
            Ok(uri) => uri,
            Err(e) => {
                return Ok(Prepared(Err(crate::Error::config(
                    "url",
                    format!("the request's URL is not a URI: {e}"),
                ))));
            }
        };
        let mut request = http::Request::new(Full::new(self.body));
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = self.headers;
        Ok(Prepared(Ok(request)))
    }
}

impl Stack {
    /// Sends a generated call's request through the stack; its failure as progenitor's
    /// generated code expects one (a `reqwest::Error` whose source is the stack's
    /// [`crate::Error`]).
    #[doc(hidden)]
    pub async fn send(&self, request: Prepared) -> reqwest::Result<Answer> {
        let result = match request.0 {
            Ok(request) => self.send_http(request).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(answer) => Ok(answer),
            Err(e) => Err(super::into_reqwest_error(e).await),
        }
    }
}

/// Does nothing: what progenitor's `pre` and `post` hooks become.
pub async fn no_hook() -> Result<(), Infallible> {
    Ok(())
}

/// A JSON answer as `T`, without copying the headers; a bare string (a UUID sent as
/// text) is read as a JSON string when `T` is one.
pub async fn from_response<T, E>(response: Answer) -> Result<ResponseValue<T>, ProgenitorError<E>>
where
    T: serde::de::DeserializeOwned,
{
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(ProgenitorError::ResponseBodyError)?
        .to_bytes();
    let inner = match serde_json::from_slice(&body) {
        Ok(inner) => inner,
        Err(error) => {
            let bare = std::str::from_utf8(&body)
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty() && !t.starts_with(['{', '[', '"']))
                .and_then(|t| serde_json::from_value(serde_json::Value::String(t.to_owned())).ok());
            match bare {
                Some(inner) => inner,
                None => return Err(ProgenitorError::InvalidResponsePayload(body, error)),
            }
        }
    };
    Ok(ResponseValue::new(inner, parts.status, parts.headers))
}

/// An answer without a body.
pub fn empty(response: Answer) -> ResponseValue<()> {
    let (parts, _) = response.into_parts();
    ResponseValue::new((), parts.status, parts.headers)
}

/// An answer whose body is a stream of bytes.
pub fn stream(response: Answer) -> ResponseValue<progenitor_client::ByteStream> {
    ResponseValue::stream(reqwest::Response::from(response))
}

/// The answer as reqwest's, for progenitor's `UnexpectedResponse`.
pub fn into_reqwest(response: Answer) -> reqwest::Response {
    reqwest::Response::from(response)
}

#[cfg(test)]
mod tests {
    use super::RequestBuilder;

    #[test]
    fn a_request_is_built_as_reqwest_would_build_it() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-many", http::HeaderValue::from_static("1"));
        headers.append("x-many", http::HeaderValue::from_static("2"));
        headers.append("api-version", http::HeaderValue::from_static("v2"));
        let id: Option<&str> = Some("a b&c");
        let none: Option<&str> = None;
        let prepared = RequestBuilder::new(http::Method::POST, "https://api.test/x".to_owned())
            .header(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            )
            .query(&progenitor_client::QueryParam::new("id", &id))
            .query(&progenitor_client::QueryParam::new("none", &none))
            .query(&progenitor_client::QueryParam::new("n", &vec![1, 2]))
            .json(&serde_json::json!({"a": 1}))
            .headers(headers)
            .build()
            .unwrap();
        let request = prepared.0.unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://api.test/x?id=a+b%26c&n=1&n=2");
        let many: Vec<_> = request.headers().get_all("x-many").iter().collect();
        assert_eq!(many, ["1", "2"]);
        assert!(request.headers().get("api-version").is_none());
        assert_eq!(
            request.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
    }

    #[tokio::test]
    async fn a_uuid_sent_as_text_reads_as_one_bare_or_quoted() {
        let id = "3d924740-9f7b-4c33-93af-ff72e118d1e6";
        for body in [id.to_owned(), format!("\"{id}\""), format!("{id}\n")] {
            let answer = http::Response::new(reqwest::Body::from(body));
            let value = super::from_response::<uuid::Uuid, ()>(answer)
                .await
                .unwrap();
            assert_eq!(value.into_inner().to_string(), id);
        }
        // Not a UUID: the body is kept in the error.
        let answer = http::Response::new(reqwest::Body::from("nope"));
        match super::from_response::<uuid::Uuid, ()>(answer).await {
            Err(progenitor_client::Error::InvalidResponsePayload(body, _)) => {
                assert_eq!(&body[..], b"nope");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_url_that_is_not_one_fails_when_sent_not_before() {
        let prepared = RequestBuilder::new(http::Method::GET, "https://a b/".to_owned())
            .build()
            .unwrap();
        let e = prepared.0.unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
    }
}
