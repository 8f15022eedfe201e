//! The sidecars' metrics (feature `metrics`): requests by route, outcome and status,
//! and the upstream's latency, in the library's OpenTelemetry conventions; with the
//! library's own (token requests, cache hits, retries), they are read on
//! `GET /metrics` in Prometheus' text format, as oauth2-proxy and Envoy serve theirs.
//!
//! Without the feature, [`Metrics`] records nothing and `/metrics` is not answered
//! (the proxy routes it, the gate verifies and forwards it).

/// What became of a request.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    /// The upstream answered (whatever its status).
    Forwarded,
    /// The sidecar refused it (the caller's request, or for the gate its token).
    Refused,
    /// The sidecar could not forward it (no token from HelseID, the upstream
    /// unreachable, the issuer's keys out of reach).
    Failed,
}

impl Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

#[cfg(feature = "metrics")]
pub(crate) use otel::{Label, Metrics};

#[cfg(not(feature = "metrics"))]
pub(crate) use off::{Label, Metrics};

#[cfg(not(feature = "metrics"))]
mod off {
    use std::time::Duration;

    use super::Outcome;

    /// A route's name as a metric attribute (nothing without the feature).
    #[derive(Clone)]
    pub(crate) struct Label;

    impl Label {
        pub(crate) fn new(_: &str) -> Self {
            Label
        }
    }

    /// Records nothing: the CLI was built without the `metrics` feature.
    pub(crate) struct Metrics;

    impl Metrics {
        pub(crate) fn install(_: &'static str) -> Self {
            Metrics
        }

        pub(crate) fn request(
            &self,
            _: Option<&Label>,
            _: Outcome,
            _: Option<&'static str>,
            _: u16,
        ) {
        }

        pub(crate) fn upstream(&self, _: Option<&Label>, _: Duration) {}

        pub(crate) fn render(&self) -> Option<String> {
            None
        }
    }
}

#[cfg(feature = "metrics")]
mod otel {
    use std::fmt::Write as _;
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use opentelemetry::metrics::{Counter, Histogram};
    use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::metrics::data::{
        AggregatedMetrics, Metric, MetricData, ResourceMetrics,
    };
    use opentelemetry_sdk::metrics::reader::MetricReader;
    use opentelemetry_sdk::metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
    };

    use super::Outcome;

    /// The upstream duration's bucket bounds, in seconds: from loopback (half a
    /// millisecond) to a slow API (ten seconds).
    const BOUNDS: [f64; 14] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// A route's name as a metric attribute, made once (a reference count per use).
    #[derive(Clone)]
    pub(crate) struct Label(StringValue);

    impl Label {
        pub(crate) fn new(route: &str) -> Self {
            Label(StringValue::from(Arc::<str>::from(route)))
        }
    }

    /// The meter provider the sidecar installs for itself and the library, its reader,
    /// and the sidecar's instruments.
    pub(crate) struct Metrics {
        reader: Arc<ManualReader>,
        /// Kept so that the provider lives as long as the sidecar.
        _provider: SdkMeterProvider,
        requests: Counter<u64>,
        upstream: Histogram<f64>,
    }

    /// The reader, shared between the provider and `/metrics`.
    #[derive(Debug)]
    struct Shared(Arc<ManualReader>);

    impl MetricReader for Shared {
        fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
            self.0.register_pipeline(pipeline);
        }

        fn collect(&self, metrics: &mut ResourceMetrics) -> OTelSdkResult {
            self.0.collect(metrics)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.0.force_flush()
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.0.shutdown_with_timeout(timeout)
        }

        fn temporality(&self, kind: InstrumentKind) -> Temporality {
            self.0.temporality(kind)
        }
    }

    impl Metrics {
        /// Installs the global meter provider (before the library makes its
        /// instruments, at the first token request) and makes `sidecar`'s
        /// (`proxy`, `gate`) instruments.
        pub(crate) fn install(sidecar: &'static str) -> Self {
            let reader = Arc::new(ManualReader::builder().build());
            let provider = SdkMeterProvider::builder()
                .with_reader(Shared(reader.clone()))
                .build();
            opentelemetry::global::set_meter_provider(provider.clone());
            let meter = opentelemetry::global::meter_with_scope(
                InstrumentationScope::builder("helseid")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            );
            let requests = meter
                .u64_counter(format!("helseid.{sidecar}.requests"))
                .with_description(format!("Requests the {sidecar} answered"))
                .with_unit("{request}")
                .build();
            let upstream = meter
                .f64_histogram(format!("helseid.{sidecar}.upstream.duration"))
                .with_description(format!(
                    "Time from the {sidecar} sending a request to the upstream's answer"
                ))
                .with_unit("s")
                .with_boundaries(BOUNDS.to_vec())
                .build();
            Metrics {
                reader,
                _provider: provider,
                requests,
                upstream,
            }
        }

        /// Counts one request: its route (the proxy's), what became of it, why not
        /// forwarded (`error.type`), and the status answered.
        pub(crate) fn request(
            &self,
            route: Option<&Label>,
            outcome: Outcome,
            error: Option<&'static str>,
            status: u16,
        ) {
            let mut attributes = Vec::with_capacity(4);
            if let Some(route) = route {
                attributes.push(KeyValue::new("http.route", route.0.clone()));
            }
            attributes.push(KeyValue::new("outcome", outcome.as_str()));
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if let Some(error) = error {
                attributes.push(KeyValue::new("error.type", error));
            }
            self.requests.add(1, &attributes);
        }

        /// Records how long the upstream took to answer (its headers).
        pub(crate) fn upstream(&self, route: Option<&Label>, took: Duration) {
            match route {
                Some(route) => self.upstream.record(
                    took.as_secs_f64(),
                    &[KeyValue::new("http.route", route.0.clone())],
                ),
                None => self.upstream.record(took.as_secs_f64(), &[]),
            }
        }

        /// Every metric, the library's included, in Prometheus' text format (0.0.4).
        pub(crate) fn render(&self) -> Option<String> {
            let mut collected = ResourceMetrics::default();
            if let Err(e) = self.reader.collect(&mut collected) {
                tracing::warn!(target: "helseid::metrics", "cannot collect the metrics: {e}");
                return None;
            }
            let mut text = String::new();
            for scope in collected.scope_metrics() {
                for metric in scope.metrics() {
                    render_metric(metric, &mut text);
                }
            }
            Some(text)
        }
    }

    /// A metric's Prometheus name: dots to underscores, the unit's suffix.
    fn prometheus_name(metric: &Metric) -> String {
        let mut name: String = metric
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let suffix = match metric.unit() {
            "s" => "_seconds",
            "ms" => "_milliseconds",
            "d" => "_days",
            "By" => "_bytes",
            _ => "",
        };
        if !name.ends_with(suffix) {
            name.push_str(suffix);
        }
        name
    }

    fn label_name(key: &str) -> String {
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// `{key="value",...}` with `extra` last; empty without any.
    fn labels<'a>(
        attributes: impl Iterator<Item = &'a KeyValue>,
        extra: Option<(&str, &str)>,
    ) -> String {
        let mut pairs: Vec<(String, String)> = attributes
            .map(|kv| (label_name(kv.key.as_str()), value_text(&kv.value)))
            .collect();
        if let Some((key, value)) = extra {
            pairs.push((key.to_owned(), value.to_owned()));
        }
        if pairs.is_empty() {
            return String::new();
        }
        let inner: Vec<String> = pairs
            .into_iter()
            .map(|(key, value)| format!("{key}=\"{}\"", escape_label(&value)))
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    fn value_text(value: &Value) -> String {
        value.as_str().into_owned()
    }

    /// A label value as the text format wants it: `\`, `"` and line feeds escaped.
    fn escape_label(value: &str) -> String {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    fn help(text: &mut String, name: &str, description: &str, kind: &str) {
        let description = description.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(text, "# HELP {name} {description}");
        let _ = writeln!(text, "# TYPE {name} {kind}");
    }

    fn render_metric(metric: &Metric, text: &mut String) {
        match metric.data() {
            AggregatedMetrics::F64(data) => render_data(metric, data, text),
            AggregatedMetrics::U64(data) => render_data(metric, data, text),
            AggregatedMetrics::I64(data) => render_data(metric, data, text),
        }
    }

    fn render_data<T: Copy + Into<Number>>(
        metric: &Metric,
        data: &MetricData<T>,
        text: &mut String,
    ) {
        let name = prometheus_name(metric);
        match data {
            MetricData::Sum(sum) if sum.is_monotonic() => {
                let total = format!("{name}_total");
                help(text, &total, metric.description(), "counter");
                for point in sum.data_points() {
                    let value: Number = point.value().into();
                    let _ = writeln!(text, "{total}{} {value}", labels(point.attributes(), None));
                }
            }
            MetricData::Sum(sum) => {
                help(text, &name, metric.description(), "gauge");
                for point in sum.data_points() {
                    let value: Number = point.value().into();
                    let _ = writeln!(text, "{name}{} {value}", labels(point.attributes(), None));
                }
            }
            MetricData::Gauge(gauge) => {
                help(text, &name, metric.description(), "gauge");
                for point in gauge.data_points() {
                    let value: Number = point.value().into();
                    let _ = writeln!(text, "{name}{} {value}", labels(point.attributes(), None));
                }
            }
            MetricData::Histogram(histogram) => {
                help(text, &name, metric.description(), "histogram");
                for point in histogram.data_points() {
                    let mut cumulative = 0u64;
                    let bounds: Vec<String> = point
                        .bounds()
                        .map(|b| Number::F64(b).to_string())
                        .chain(std::iter::once("+Inf".to_owned()))
                        .collect();
                    for (bound, count) in bounds.iter().zip(point.bucket_counts()) {
                        cumulative += count;
                        let _ = writeln!(
                            text,
                            "{name}_bucket{} {cumulative}",
                            labels(point.attributes(), Some(("le", bound)))
                        );
                    }
                    let shown = labels(point.attributes(), None);
                    let sum: Number = point.sum().into();
                    let _ = writeln!(text, "{name}_sum{shown} {sum}");
                    let _ = writeln!(text, "{name}_count{shown} {}", point.count());
                }
            }
            // The sidecars and the library make no exponential histograms.
            MetricData::ExponentialHistogram(_) => {}
        }
    }

    /// A sample's value, written as the text format reads it.
    #[derive(Clone, Copy)]
    pub(super) enum Number {
        F64(f64),
        U64(u64),
        I64(i64),
    }

    impl From<f64> for Number {
        fn from(value: f64) -> Self {
            Number::F64(value)
        }
    }

    impl From<u64> for Number {
        fn from(value: u64) -> Self {
            Number::U64(value)
        }
    }

    impl From<i64> for Number {
        fn from(value: i64) -> Self {
            Number::I64(value)
        }
    }

    impl std::fmt::Display for Number {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match *self {
                Number::F64(v) if v.is_nan() => f.write_str("NaN"),
                Number::F64(v) if v.is_infinite() => {
                    f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
                }
                Number::F64(v) => write!(f, "{v}"),
                Number::U64(v) => write!(f, "{v}"),
                Number::I64(v) => write!(f, "{v}"),
            }
        }
    }
}
