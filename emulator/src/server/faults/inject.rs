//! The fault middleware: answers a request to a target with a fault, in the fault's way.

use super::*;
use crate::server::state::State;

/// The middleware: answers a request to a target with a fault in the fault's way.
pub(crate) async fn inject(
    Extract(state): Extract<State>,
    request: Request,
    next: Next,
) -> Response {
    let Some(target) = FaultTarget::of(request.uri().path()) else {
        return next.run(request).await;
    };
    // Before the fault is read, so that a change after the read releases a hang.
    let mut changes = state.faults.changes.subscribe();
    let Some(fault) = state.faults.get(target) else {
        return next.run(request).await;
    };
    state.faults.injected[Faults::slot(target)].fetch_add(1, Ordering::Relaxed);
    let answered = matches!(fault, Fault::Delay(_) | Fault::WrongTokenType);
    if target == FaultTarget::TokenEndpoint && !answered {
        // A token request that never reaches the handler is counted all the same.
        state.idp.token_requests.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(?target, ?fault, "helseid emulator answers with a fault");
    match fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("fault injected by the helseid emulator: HTTP {status}"),
            )
                .into_response();
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Fault::Hang => {
            // Until the fault changes (or the emulator stops and drops the sender).
            let _ = changes.changed().await;
            Response::new(Body::new(FaultBody::Fail))
        }
        Fault::Delay(delay) => {
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Fault::Garbage => json_200(
            Body::from(
                &b"\x00\xff\xfe<html>\x1b[31mnot json\r\nERROR forged\x07\x80{\"access_token\":"[..],
            ),
            None,
        ),
        Fault::Truncated => {
            let start = Bytes::from_static(br#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJ"#);
            let promised = start.len() as u64 + 4096;
            json_200(
                Body::new(FaultBody::Cut {
                    chunk: Some(start),
                    waited: false,
                }),
                Some(promised),
            )
        }
        Fault::Close => Response::new(Body::new(FaultBody::Fail)),
        Fault::Huge { bytes } => json_200(
            Body::new(FaultBody::Huge {
                remaining: bytes,
                started: false,
            }),
            Some(bytes),
        ),
        Fault::WrongTokenType => wrong_token_type(next.run(request).await).await,
        Fault::RejectTokens => reject_token(target),
    }
}

/// `200 OK`, `Content-Type: application/json`, this body, and this `Content-Length`.
fn json_200(body: Body, length: Option<u64>) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// A token response with the other `token_type`; any other answer as it is.
async fn wrong_token_type(response: Response) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REWRITTEN).await else {
        return Response::new(Body::new(FaultBody::Fail));
    };
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let other = match json.get("token_type").and_then(serde_json::Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("dpop") => "Bearer",
        _ => "DPoP",
    };
    json["token_type"] = serde_json::Value::from(other);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json.to_string()))
}

/// 401 `invalid_token`, in the scheme of the API.
fn reject_token(target: FaultTarget) -> Response {
    let description = "the API refuses every token (a fault injected by the helseid emulator)";
    let challenge = match target {
        FaultTarget::Cpapi => format!(
            "DPoP error=\"invalid_token\", error_description=\"{description}\", algs=\"{}\"",
            ALGS.join(" ")
        ),
        _ => format!("Bearer error=\"invalid_token\", error_description=\"{description}\""),
    };
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// The error a fault's body fails with; hyper closes the connection on it.
#[derive(Debug, thiserror::Error)]
#[error("the connection is closed by a fault injected by the helseid emulator")]
struct Closed;

/// A body that acts below an HTTP answer.
enum FaultBody {
    /// Fails at once: hyper closes the connection before the answer's head is sent.
    Fail,
    /// Sends this chunk, waits once (so that hyper sends what it has), then fails: the
    /// message ends short of its `Content-Length`.
    Cut { chunk: Option<Bytes>, waited: bool },
    /// Sends `remaining` bytes of a JSON string that never ends.
    Huge { remaining: u64, started: bool },
}

impl http_body::Body for FaultBody {
    type Data = Bytes;
    type Error = Closed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Closed>>> {
        let this = self.get_mut();
        Poll::Ready(match this {
            FaultBody::Fail => Some(Err(Closed)),
            FaultBody::Cut { chunk, waited } => match chunk.take() {
                Some(chunk) => Some(Ok(Frame::data(chunk))),
                None if !*waited => {
                    // hyper writes the head and the chunk out while the body is pending.
                    *waited = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                None => Some(Err(Closed)),
            },
            FaultBody::Huge { remaining, started } => {
                if *remaining == 0 {
                    None
                } else {
                    let n = usize::try_from(*remaining).unwrap_or(CHUNK).min(CHUNK);
                    let mut chunk = vec![b'a'; n];
                    if !*started {
                        let start = br#"{"access_token":""#;
                        let len = start.len().min(n);
                        chunk[..len].copy_from_slice(&start[..len]);
                        *started = true;
                    }
                    *remaining -= n as u64;
                    Some(Ok(Frame::data(Bytes::from(chunk))))
                }
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FaultBody::Huge { remaining: 0, .. })
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            FaultBody::Huge { remaining, .. } => http_body::SizeHint::with_exact(*remaining),
            _ => http_body::SizeHint::default(),
        }
    }
}
