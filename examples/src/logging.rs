//! The examples' logs and traces: log lines on stderr, filtered by `RUST_LOG` (`info`
//! by default); with the `otel` feature and an OTLP endpoint in the environment, spans
//! exported over OTLP/HTTP as well.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=chat \
//!     cargo run -p gonet-examples --features otel --example chat -- server tcp://127.0.0.1:7100
//! ```
//!
//! The exporter reads the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (the
//! collector's base URL; spans go to its `/v1/traces`) or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` (and `_ARG`) and the batch processor's `OTEL_BSP_*`.
//! `OTEL_SDK_DISABLED=true` turns export off.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The variables that name where spans go; export is on when one is set.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// What [`init`] installed; [`Logging::shutdown`] sends the spans not yet exported.
#[derive(Debug)]
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Logging {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Installs the process's `tracing` subscriber: log lines on stderr filtered by
/// `RUST_LOG`, and, built with the `otel` feature and given an OTLP endpoint in the
/// environment, an OpenTelemetry layer exporting spans as `service` (unless
/// `OTEL_SERVICE_NAME` names it). Call it inside the Tokio runtime, which runs the
/// exporter.
pub fn init(service: &str) -> anyhow::Result<Logging> {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let wanted = exporting();
    #[cfg(feature = "otel")]
    {
        let provider = wanted
            .then(|| otlp::tracer_provider(service, None))
            .transpose()?;
        tracing_subscriber::registry()
            .with(logs)
            .with(provider.as_ref().map(otlp::layer))
            .try_init()?;
        if provider.is_some() {
            tracing::info!(service, "spans exported over OTLP/HTTP");
        }
        Ok(Logging { provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        tracing_subscriber::registry().with(logs).try_init()?;
        if wanted {
            tracing::warn!(
                service,
                "an OTLP endpoint is set, but this build exports no spans: build with \
                 `--features otel`"
            );
        }
        Ok(Logging {})
    }
}

impl Logging {
    /// Exports the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            otlp::shutdown(provider).await;
        }
    }
}

/// Whether the environment asks for spans to be exported.
fn exporting() -> bool {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && ENDPOINT_VARS.iter().any(|var| set(var))
}

/// The OTLP/HTTP exporter and its `tracing` layer (feature `otel`).
#[cfg(feature = "otel")]
pub mod otlp {
    use anyhow::Context as _;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::registry::LookupSpan;

    /// A tracer provider exporting over OTLP/HTTP (protobuf) to `endpoint`, the full
    /// URL of the traces (such as `http://127.0.0.1:4318/v1/traces`), or else to what
    /// the `OTEL_EXPORTER_OTLP_*` variables say. Its batches go out from a task on the
    /// current Tokio runtime, through hyper: no thread or runtime of its own.
    pub fn tracer_provider(
        service: &str,
        endpoint: Option<&str>,
    ) -> anyhow::Result<SdkTracerProvider> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter.build().context("the OTLP span exporter")?;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource(service))
            .build())
    }

    /// The resource the variables describe, named `service` unless they name it.
    fn resource(service: &str) -> Resource {
        let detected = Resource::builder().build();
        let named = detected
            .get(&opentelemetry::Key::new("service.name"))
            .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
        if named {
            detected
        } else {
            Resource::builder()
                .with_service_name(service.to_owned())
                .build()
        }
    }

    /// The layer that turns spans into OpenTelemetry spans of `provider`: the
    /// application's at `info` and up, and gonet's at `debug` (its `message` span, one
    /// per message handled, is at that level).
    pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let filter = Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target("gonet", tracing::Level::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("gonet-examples"))
            .with_filter(filter)
    }

    /// Exports what is queued and stops `provider`. Its flush waits for the exporting
    /// task, so it runs on a blocking thread while the runtime's workers run that task.
    pub async fn shutdown(provider: SdkTracerProvider) {
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "OTLP exporter shut down with an error"),
            Err(err) => tracing::warn!(%err, "OTLP exporter shutdown panicked"),
        }
    }
}
