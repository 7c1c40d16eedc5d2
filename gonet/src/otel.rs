//! Tracing across processes: a message continues its caller's OpenTelemetry trace
//! (feature `otel`).
//!
//! The caller writes its span's context into the message's [`Metadata`] as a W3C
//! `traceparent` (and `tracestate`) pair, with [`inject`]; the handling side makes the
//! message's `message` span a child of that context, so the handler's span and every
//! span under it join the caller's trace. A gonet client, a node calling another and a
//! gate relaying to a backend (`gonet-cluster` carries metadata across hops) all pass
//! the context on the same way.
//!
//! Only the spans' parentage is gonet's part. Exporting them is the application's: a
//! `tracing_opentelemetry` layer over a tracer provider with an exporter (OTLP in the
//! chat example, configured from the standard `OTEL_*` variables). The `message` span
//! is at the `DEBUG` level: the layer's filter must let `gonet=debug` through for it
//! to exist.
//!
//! What it costs: a message without metadata, or whose metadata has no
//! `traceparent`, pays one lookup among its pairs at most, and nothing at all when the
//! `message` span is disabled; one with a `traceparent` has it parsed once.
//!
//! ```
//! use gonet::{Builder, Metadata, Router, Session};
//! use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
//! use tracing_opentelemetry::OpenTelemetrySpanExt as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! struct Ping {
//!     #[prost(string, tag = "1")]
//!     trace_id: String,
//! }
//! gonet::message!(Ping = 1, prost);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Spans become OpenTelemetry spans (here without an exporter).
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("demo")));
//! let _default = tracing::subscriber::set_default(subscriber);
//!
//! // The handler answers with the trace its span is in.
//! let router = Router::new().route(|_: Session, _: Ping| async move {
//!     let cx = tracing::Span::current().context();
//!     Ping { trace_id: cx.span().span_context().trace_id().to_string() }
//! });
//! let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
//! let client = Builder::new().dial(&server.url()).await?;
//!
//! let checkout = tracing::info_span!("checkout");
//! let mut meta = Metadata::new();
//! checkout.in_scope(|| gonet::otel::inject(&mut meta));
//! assert!(meta.get(gonet::otel::TRACEPARENT).is_some());
//!
//! let pong: Ping = client.call_with(&Ping::default(), &meta).await?;
//! let trace_id = checkout.context().span().span_context().trace_id();
//! assert_eq!(pong.trace_id, trace_id.to_string());
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::wire::Metadata;

/// The metadata key of the W3C trace context's `traceparent`
/// (`00-<trace id>-<parent span id>-<flags>`).
pub const TRACEPARENT: &str = "traceparent";

/// The metadata key of the W3C trace context's `tracestate` (vendors' pairs), optional.
pub const TRACESTATE: &str = "tracestate";

/// Writes the context of the current `tracing` span into `meta`, as [`TRACEPARENT`]
/// (and [`TRACESTATE`] when there is one), for the call or send that carries `meta`.
///
/// Writes nothing when the current span has no OpenTelemetry context (no
/// `tracing_opentelemetry` layer, or no span), so `meta` can be sent either way.
///
/// ```
/// let mut meta = gonet::Metadata::new().with(gonet::TRACE_ID, "order-17");
/// gonet::otel::inject(&mut meta);
/// // No OpenTelemetry layer is installed here: nothing was added.
/// assert_eq!(meta.get(gonet::otel::TRACEPARENT), None);
/// ```
pub fn inject(meta: &mut Metadata) {
    inject_context(&tracing::Span::current().context(), meta);
}

/// Writes `cx`, an OpenTelemetry context, into `meta` as [`inject`] does.
pub fn inject_context(cx: &Context, meta: &mut Metadata) {
    TraceContextPropagator::new().inject_context(cx, &mut MetadataCarrier(meta));
}

/// The OpenTelemetry context that `meta` carries: the remote span of its
/// [`TRACEPARENT`], or an empty context when it has none or it is malformed.
///
/// ```
/// use opentelemetry::trace::TraceContextExt as _;
///
/// let meta = gonet::Metadata::new().with(
///     gonet::otel::TRACEPARENT,
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// );
/// let cx = gonet::otel::extract(&meta);
/// let span = cx.span();
/// assert_eq!(span.span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(span.span_context().is_remote());
/// ```
pub fn extract(meta: &Metadata) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &MetadataReader(meta))
}

/// Makes `span`, not yet entered, a child of the trace context that `meta` carries, if
/// it carries one: what the runtime does to each message's `message` span, for a
/// handler run some other way (a cluster node handling a relayed message does this to
/// its `relayed` span).
///
/// Does nothing when `span` is disabled, when `meta` has no valid [`TRACEPARENT`], or
/// when no `tracing_opentelemetry` layer is installed.
///
/// ```
/// let meta = gonet::Metadata::new().with(
///     gonet::otel::TRACEPARENT,
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// );
/// let span = tracing::debug_span!("relayed");
/// gonet::otel::continue_trace(&span, &meta);
/// ```
pub fn continue_trace(span: &tracing::Span, meta: &Metadata) {
    if span.is_disabled() || meta.get(TRACEPARENT).is_none() {
        return;
    }
    let cx = extract(meta);
    if cx.has_active_span() {
        // Fails only when no OpenTelemetry layer is installed: then there is no trace
        // to join.
        let _ = span.set_parent(cx);
    }
}

/// `meta` as the propagator reads it.
struct MetadataReader<'a>(&'a Metadata);

impl Extractor for MetadataReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(key, _)| key).collect()
    }
}

/// `meta` as the propagator writes it.
struct MetadataCarrier<'a>(&'a mut Metadata);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_context_written_reads_back() {
        let sent = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let mut meta = Metadata::new().with(crate::wire::TRACE_ID, "t");
        inject_context(
            &Context::new().with_remote_span_context(sent.clone()),
            &mut meta,
        );
        assert_eq!(meta.get(TRACEPARENT), Some(PARENT));
        assert_eq!(meta.get(TRACESTATE), Some("vendor=x"));
        assert_eq!(meta.trace_id(), Some("t"), "other pairs are kept");

        let cx = extract(&meta);
        let back = cx.span().span_context().clone();
        assert_eq!(back.trace_id(), sent.trace_id());
        assert_eq!(back.span_id(), sent.span_id());
        assert!(back.is_sampled());
        assert!(back.is_remote());
        assert_eq!(back.trace_state().header(), "vendor=x");
    }

    #[test]
    fn no_context_writes_nothing_and_a_bad_one_reads_as_none() {
        let mut meta = Metadata::new();
        inject_context(&Context::new(), &mut meta);
        assert!(meta.is_empty());

        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let meta = Metadata::new().with(TRACEPARENT, bad);
            assert!(!extract(&meta).has_active_span(), "{bad:?}");
        }
    }
}
