//! W3C Trace Context across the mesh: one trace id from an HTTP request to every plugin
//! effect it causes. The API edge continues the caller's `traceparent` (or starts a trace)
//! and runs the request in its [`scope`]; [`crate::outbox::enqueue`] stores the context with
//! the event (the CloudEvents distributed-tracing extension attribute `traceparent`, and a
//! column the relay reads); the relay publishes it as the `traceparent` NATS header; the
//! plugin host logs it with every delivery. Work handed to another task (a group commit)
//! carries the submitter's context along ([`crate::group_commit::GroupCommit`]).
//!
//! Spans: with an OTLP endpoint configured ([`export_to`]), the request (server), the relay's
//! publish (producer), each plugin's processing of an event (consumer, with the OpenTelemetry
//! messaging attributes) and, inside it, the invocation and the effects' commit are exported
//! over OTLP/HTTP; without one, [`Span`]s only move the context along (nothing is recorded).

use std::{
    borrow::Cow,
    future::Future,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::SystemTime,
};

use opentelemetry::{
    trace::{Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _},
    Context, KeyValue,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use opentelemetry::trace::SpanKind as Kind;

/// A position in a trace: the trace, the span that is the parent of what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace.
    pub fn root() -> TraceContext {
        let trace_id = (u128::from(random()) << 64) | u128::from(random());
        TraceContext { trace_id, span_id: random(), sampled: true }
    }

    /// A new span in the same trace, with this one as its parent.
    pub fn child(&self) -> TraceContext {
        TraceContext { span_id: random(), ..*self }
    }

    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when it is not
    /// a valid one (the spec: then start a new trace).
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        fn hex(s: &str, len: usize) -> Option<&str> {
            (s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(s)
        }
        let version = u8::from_str_radix(hex(version, 2)?, 16).ok()?;
        // Version ff is invalid; a later version may append fields, version 00 may not.
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(hex(trace, 32)?, 16).ok()?;
        let span_id = u64::from_str_radix(hex(span, 16)?, 16).ok()?;
        let flags = u8::from_str_radix(hex(flags, 2)?, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// The context the current task runs in, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `work` in `context` (what [`current`] answers inside it).
pub async fn scope<F: Future>(context: TraceContext, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

/// Runs `work` in `context` when there is one.
pub async fn maybe_scope<F: Future>(context: Option<TraceContext>, work: F) -> F::Output {
    match context {
        Some(c) => scope(c, work).await,
        None => work.await,
    }
}

/// The OTLP pipeline, once per process.
static EXPORT: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

/// Exports spans to the OTLP/HTTP collector at `endpoint` (`http://host:4318`; `/v1/traces`
/// is added) from now on, batched by a background thread (`OTEL_BSP_SCHEDULE_DELAY` and
/// the other `OTEL_BSP_*` variables tune it). Once per process: a second call keeps the first.
pub fn export_to(endpoint: &str) -> Result<(), String> {
    if EXPORT.get().is_some() {
        return Ok(());
    }
    let url = match endpoint.trim_end_matches('/') {
        e if e.ends_with("/v1/traces") => e.to_owned(),
        e => format!("{e}/v1/traces"),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build().map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("shopmesh").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("shopmesh");
    let _ = EXPORT.set((provider, tracer));
    Ok(())
}

/// Sends what is batched (at shutdown). Blocks: call it off the async threads.
pub fn flush() {
    if let Some((provider, _)) = EXPORT.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "could not flush the trace exporter");
        }
    }
}

/// A span: its context (what children and the next hop continue) and, when exporting, the
/// span being recorded. Ends when [`end`](Span::end)ed or dropped.
pub struct Span {
    pub context: TraceContext,
    recorded: Option<opentelemetry_sdk::trace::Span>,
}

/// A span's name and attributes, asked for only when spans are exported (the hot path
/// allocates nothing for them otherwise).
pub type Describe = (Cow<'static, str>, Vec<KeyValue>);

/// Starts a span under `parent` (a new trace when there is none), `describe`d.
pub fn start(kind: Kind, parent: Option<TraceContext>, describe: impl FnOnce() -> Describe) -> Span {
    start_at(kind, parent, describe, None)
}

fn start_at(kind: Kind, parent: Option<TraceContext>, describe: impl FnOnce() -> Describe, at: Option<SystemTime>) -> Span {
    let Some((_, tracer)) = EXPORT.get() else {
        return Span { context: parent.map_or_else(TraceContext::root, |p| p.child()), recorded: None };
    };
    let (name, attributes) = describe();
    let parent_cx = match parent {
        Some(p) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(p.trace_id),
            SpanId::from(p.span_id),
            if p.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    let mut builder = tracer.span_builder(name).with_kind(kind).with_attributes(attributes);
    if let Some(at) = at {
        builder = builder.with_start_time(at);
    }
    let span = builder.start_with_context(tracer, &parent_cx);
    let sc = span.span_context();
    let context = TraceContext {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        sampled: sc.is_sampled(),
    };
    Span { context, recorded: Some(span) }
}

/// Records a finished piece of work that ran from `started` to `ended` under `parent`.
pub fn record(parent: TraceContext, started: SystemTime, ended: SystemTime, describe: impl FnOnce() -> Describe) {
    if EXPORT.get().is_some() {
        let mut span = start_at(Kind::Internal, Some(parent), describe, Some(started));
        if let Some(s) = span.recorded.as_mut() {
            s.end_with_timestamp(ended);
        }
    }
}

impl Span {
    pub fn set(&mut self, attribute: KeyValue) {
        if let Some(s) = self.recorded.as_mut() {
            s.set_attribute(attribute);
        }
    }

    pub fn fail(&mut self, why: impl Into<Cow<'static, str>>) {
        if let Some(s) = self.recorded.as_mut() {
            s.set_status(Status::error(why));
        }
    }

    pub fn rename(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(s) = self.recorded.as_mut() {
            s.update_name(name);
        }
    }

    pub fn end(self) {} // the recorded span ends when dropped
}

/// A random non-zero 64-bit id. Trace ids need to be unique, not secret: std's randomly
/// keyed SipHash over a counter gives that without another dependency.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let id = h.finish();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_refusals() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(header).expect("the spec's example");
        assert_eq!(ctx.header(), header);
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        let root = TraceContext::root();
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
        assert_ne!(TraceContext::root().trace_id, root.trace_id);
    }
}
