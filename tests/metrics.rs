//! The crate's metrics, read through OpenTelemetry's SDK and its in-memory exporter,
//! after real token requests to the emulator and real 401 retries.
#![cfg(feature = "metrics")]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tower::{Layer, ServiceExt, service_fn};

use helseid::HelseIdLayer;
use helseid::endpoint::TokenEndpoint;
use support::{CP_SCOPE, TestClient};

/// An API that refuses the first token it sees with `401 invalid_token`.
fn api() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send {
    let refused = Arc::new(AtomicBool::new(false));
    service_fn(move |_request: Request<Full<Bytes>>| {
        let first = !refused.swap(true, Ordering::SeqCst);
        async move {
            let mut response = Response::new(Full::new(Bytes::new()));
            if first {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Ok::<_, Infallible>(response)
        }
    })
}

/// The data points of `name`: (attributes, value) for sums and gauges, (attributes,
/// count) for histograms.
fn points(metrics: &[ResourceMetrics], name: &str) -> Vec<(Vec<KeyValue>, f64)> {
    let mut found = Vec::new();
    for resource in metrics {
        for scope in resource.scope_metrics() {
            assert_eq!(scope.scope().name(), "helseid");
            for metric in scope.metrics().filter(|m| m.name() == name) {
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => found.extend(
                        sum.data_points()
                            .map(|p| (p.attributes().cloned().collect(), p.value() as f64)),
                    ),
                    AggregatedMetrics::F64(MetricData::Gauge(gauge)) => found.extend(
                        gauge
                            .data_points()
                            .map(|p| (p.attributes().cloned().collect(), p.value())),
                    ),
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => found.extend(
                        histogram
                            .data_points()
                            .map(|p| (p.attributes().cloned().collect(), p.count() as f64)),
                    ),
                    other => panic!("{name}: unexpected data {other:?}"),
                }
            }
        }
    }
    found
}

/// The value of `name` at the point whose attributes include all of `with`.
fn value(metrics: &[ResourceMetrics], name: &str, with: &[(&str, &str)]) -> f64 {
    let points = points(metrics, name);
    points
        .iter()
        .filter(|(attributes, _)| {
            with.iter().all(|(k, v)| {
                attributes
                    .iter()
                    .any(|a| a.key.as_str() == *k && a.value.as_str() == *v)
            })
        })
        .map(|(_, value)| value)
        .sum::<f64>()
        .max(if points.is_empty() { -1.0 } else { 0.0 })
}

#[tokio::test]
async fn token_requests_cache_lookups_retries_and_key_expiry_reach_the_sdk() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let client = TestClient::ec("metered");
    let emulator = support::emulator_with(&client).await;
    let config = helseid::config::ClientConfig::builder()
        .client_id("metered")
        .authority_url(emulator.issuer())
        .scopes([CP_SCOPE])
        .private_jwk(&client.jwk)
        .key_expires_at(SystemTime::now() + Duration::from_secs(20 * 86_400 + 3600))
        .build()
        .expect("config");
    let endpoint = TokenEndpoint::new(config).expect("endpoint");
    let service = HelseIdLayer::builder(endpoint.clone()).build().layer(api());
    for _ in 0..11 {
        let response = service
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
            .expect("served");
        assert_eq!(response.status(), StatusCode::OK);
    }
    // A token request HelseID refuses.
    let refused = HelseIdLayer::builder(endpoint)
        .scopes(["not:granted/scope"])
        .build()
        .layer(api());
    refused
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect_err("invalid_scope");

    provider.force_flush().expect("flush");
    let metrics = exporter.get_finished_metrics().expect("metrics");
    let requests = "helseid.token.requests";
    let success = [
        ("oauth.grant_type", "client_credentials"),
        ("outcome", "success"),
    ];
    assert_eq!(
        value(&metrics, requests, &success),
        2.0,
        "first token, then after the 401"
    );
    assert_eq!(
        value(
            &metrics,
            requests,
            &[("outcome", "failure"), ("error.type", "oauth_error")]
        ),
        1.0
    );
    assert_eq!(emulator.token_requests(), 3);
    assert_eq!(value(&metrics, "helseid.token.request.duration", &[]), 3.0);
    assert_eq!(
        value(
            &metrics,
            "helseid.http.retries",
            &[("helseid.retry.reason", "invalid_token")]
        ),
        1.0
    );
    let level = [("helseid.cache.level", "local")];
    assert!(value(&metrics, "helseid.cache.hits", &level) >= 10.0);
    // The refused layer's cache is gone: only the first cache is observed.
    assert_eq!(value(&metrics, "helseid.cache.misses", &level), 2.0);
    let days = value(
        &metrics,
        "helseid.key.expiry",
        &[("oauth.client_id", "metered")],
    );
    assert!((20.0..20.1).contains(&days), "{days}");
}

#[cfg(feature = "verify")]
#[path = "support/issuer.rs"]
mod issuer;

/// `helseid::verify`'s metrics after real requests: tokens from the emulator verified
/// over real HTTP, refusals by reason, cache hits, and key fetches that succeed, fail
/// and find an empty key set.
#[cfg(feature = "verify")]
#[tokio::test]
async fn verifications_by_outcome_and_reason_cache_hits_and_key_fetches_reach_the_sdk() {
    use helseid::verify::{Dpop, VerifyLayer};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let scope = "nhn:cp-api/access";
    let emulator = helseid_emulator::Emulator::builder()
        .test_client("epj", [scope])
        .start()
        .await
        .expect("emulator");
    let token = TokenEndpoint::new(emulator.client_config("epj").expect("config"))
        .expect("endpoint")
        .client_credentials()
        .await
        .expect("token");
    let layer = VerifyLayer::builder(emulator.issuer())
        .audience("nhn:cp-api")
        .dpop(Dpop::Allowed)
        .public_base_url("https://api.example.no")
        .build()
        .expect("layer");
    let api = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|_request: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let send = |authorization: Option<String>| {
        let api = api.clone();
        async move {
            let mut request = Request::get("https://api.example.no/x");
            if let Some(authorization) = authorization {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            api.oneshot(request.body(String::new()).expect("request"))
                .await
                .expect("infallible")
                .status()
        }
    };
    let good = format!("Bearer {}", token.secret());
    for _ in 0..3 {
        assert_eq!(send(Some(good.clone())).await, StatusCode::OK);
    }
    assert_eq!(send(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(Some("Bearer abc.def.ghi".to_owned())).await,
        StatusCode::UNAUTHORIZED
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let elsewhere = emulator
        .sign_access_token(&serde_json::json!({
            "iss": emulator.issuer(),
            "aud": "e-helse:sfm.api",
            "exp": now + 300,
            "iat": now,
            "client_id": "epj",
            "scope": [scope],
        }))
        .expect("token");
    assert_eq!(
        send(Some(format!("Bearer {elsewhere}"))).await,
        StatusCode::UNAUTHORIZED
    );
    // Optional authentication lets a request without credentials through.
    let optional = tower::ServiceBuilder::new()
        .layer(
            VerifyLayer::builder(emulator.issuer())
                .audience("nhn:cp-api")
                .dpop(Dpop::Disabled)
                .optional(true)
                .build()
                .expect("layer"),
        )
        .service_fn(|_request: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let answer = optional
        .oneshot(Request::new(String::new()))
        .await
        .expect("infallible");
    assert_eq!(answer.status(), StatusCode::OK);
    // An issuer whose JWKS is empty, and one that does not answer: the layer's readiness
    // fetches their keys.
    let empty = issuer::IssuerDouble::serve(Vec::new()).await;
    empty.set_mode(issuer::Jwks::Empty);
    let unreachable = "http://127.0.0.1:9";
    for issuer in [empty.url().as_str(), unreachable] {
        let layer = VerifyLayer::builder(issuer)
            .audience("nhn:cp-api")
            .dpop(Dpop::Disabled)
            .build()
            .expect("layer");
        layer.ready().await.expect_err("no keys");
    }

    provider.force_flush().expect("flush");
    let metrics = exporter.get_finished_metrics().expect("metrics");
    let requests = "helseid.verify.requests";
    assert_eq!(value(&metrics, requests, &[("outcome", "passed")]), 3.0);
    assert_eq!(value(&metrics, requests, &[("outcome", "anonymous")]), 1.0);
    assert_eq!(value(&metrics, requests, &[("outcome", "refused")]), 3.0);
    for reason in ["no_credentials", "malformed_token", "wrong_audience"] {
        assert_eq!(
            value(
                &metrics,
                requests,
                &[("outcome", "refused"), ("error.type", reason)]
            ),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(value(&metrics, "helseid.verify.cache.hits", &[]), 2.0);
    // The good token's first use, the malformed one and the other audience's.
    assert_eq!(value(&metrics, "helseid.verify.cache.misses", &[]), 3.0);
    let fetches = "helseid.verify.key_fetches";
    let issuer = emulator.issuer().trim_end_matches('/').to_owned();
    assert_eq!(
        value(
            &metrics,
            fetches,
            &[("helseid.issuer", &issuer), ("outcome", "success")]
        ),
        1.0
    );
    let empty_url = empty.url();
    assert_eq!(
        value(
            &metrics,
            fetches,
            &[("helseid.issuer", &empty_url), ("outcome", "empty")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            fetches,
            &[("helseid.issuer", unreachable), ("outcome", "failure")]
        ),
        1.0
    );
    assert_eq!(value(&metrics, fetches, &[("outcome", "success")]), 1.0);
}
