//! Spans of a gonet server exported over OTLP/HTTP, as the examples set it up
//! (`gonet_examples::logging::otlp`), to a receiver in the test: a call whose metadata
//! carries the caller's `traceparent` is handled in a `message` span of the caller's
//! trace, a child of the caller's span.
//!
//! The subscriber is the process's global one, so this binary holds this one test.

use std::net::SocketAddr;
use std::time::Duration;

use gonet::{Builder, Metadata, Router, Session};
use gonet_examples::logging::otlp;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::mpsc;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Clone, PartialEq, prost::Message)]
struct Order {
    #[prost(string, tag = "1")]
    item: String,
}
gonet::message!(Order = 7001, prost);

/// What the receiver made of one export: the request, or why it refused it.
type Export = Result<ExportTraceServiceRequest, String>;

/// An OTLP/HTTP receiver on a free loopback port: each `POST /v1/traces` of protobuf
/// is decoded and sent on the channel, and answered as a collector does.
async fn receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Export>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| receive(req, tx.clone()));
                // A connection that breaks off is the exporter's business.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

async fn receive(
    req: Request<Incoming>,
    tx: mpsc::UnboundedSender<Export>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let answer = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        Ok(response)
    };
    if req.method() != Method::POST || req.uri().path() != "/v1/traces" {
        let _ = tx.send(Err(format!("{} {}", req.method(), req.uri())));
        return answer(StatusCode::NOT_FOUND, Vec::new());
    }
    let content_type = req.headers().get("content-type").cloned();
    if content_type.as_ref().and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        let _ = tx.send(Err(format!("content type {content_type:?}")));
        return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let body = req.into_body().collect().await?.to_bytes();
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) => {
            let _ = tx.send(Ok(export));
            answer(
                StatusCode::OK,
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        Err(err) => {
            let _ = tx.send(Err(format!("undecodable export: {err}")));
            answer(StatusCode::BAD_REQUEST, Vec::new())
        }
    }
}

/// The value of attribute `key` of `span`.
fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_message_is_exported_in_the_callers_trace() {
    let (addr, mut exports) = receiver().await;
    let endpoint = format!("http://{addr}/v1/traces");
    let provider = otlp::tracer_provider("otel-test", Some(&endpoint)).expect("an exporter");
    tracing_subscriber::registry()
        .with(otlp::layer(&provider))
        .try_init()
        .expect("the only subscriber of this test binary");

    let router = Router::new().route(|_: Session, order: Order| async move { order });
    let server = Builder::new()
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("served");
    let client = Builder::new().dial(&server.url()).await.expect("dialed");

    // The caller's span, whose context the call carries.
    let checkout = tracing::info_span!("checkout");
    let mut meta = Metadata::new();
    checkout.in_scope(|| gonet::otel::inject(&mut meta));
    let caller = checkout.context().span().span_context().clone();
    assert!(caller.is_valid() && caller.is_sampled());
    assert_eq!(
        meta.get(gonet::otel::TRACEPARENT),
        Some(format!("00-{}-{}-01", caller.trace_id(), caller.span_id()).as_str())
    );
    let order = Order { item: "tea".into() };
    let reply: Order = client.call_with(&order, &meta).await.expect("answered");
    assert_eq!(reply, order);
    drop(checkout);

    // Every session has ended, and its spans with it, once the server has shut down;
    // a flush then returns once the exporter's request has been answered.
    client.close("done");
    server.shutdown().await;
    let (flushed, provider) =
        tokio::task::spawn_blocking(move || (provider.force_flush(), provider))
            .await
            .expect("flushed");
    flushed.expect("the exporter's batch accepted");

    let found = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        loop {
            let Some(export) = exports.recv().await else {
                panic!("the receiver stopped; spans seen: {seen:?}");
            };
            let export = export.unwrap_or_else(|err| panic!("bad export: {err}"));
            for resource in export.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.clone());
                for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                    if span.name == "message" {
                        return (span, service);
                    }
                    seen.push(span.name);
                }
            }
        }
    })
    .await
    .expect("the message span exported in time");
    let (span, service) = found;

    assert_eq!(
        span.trace_id,
        caller.trace_id().to_bytes(),
        "the caller's trace"
    );
    assert_eq!(
        span.parent_span_id,
        caller.span_id().to_bytes(),
        "a child of the caller's span"
    );
    // The span's fields are its attributes (a `u32` field is written as text).
    let id = match attribute(&span, "id") {
        Some(any_value::Value::IntValue(id)) => id.to_string(),
        Some(any_value::Value::StringValue(id)) => id.clone(),
        other => panic!("the message id attribute: {other:?}"),
    };
    assert_eq!(id, "7001");
    assert_eq!(
        service.and_then(|v| v.value),
        Some(any_value::Value::StringValue("otel-test".into()))
    );
    otlp::shutdown(provider).await;
}
