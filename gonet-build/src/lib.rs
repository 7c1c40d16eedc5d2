//! gonet-build: Rust from `.proto` files for gonet, run from `build.rs`.
//!
//! A schema gives every message a numeric id with the `(gonet.id)` option; services
//! declare rpcs between such messages:
//!
//! ```proto
//! syntax = "proto3";
//! package chat;
//! import "gonet/options.proto";
//!
//! message Say    { option (gonet.id) = 101; string content = 1; }
//! message SayAck { option (gonet.id) = 102; string content = 1; }
//!
//! service SayService {
//!   rpc Say(Say) returns (SayAck);
//! }
//! ```
//!
//! ```no_run
//! // in build.rs's `main`
//! gonet_build::compile(&["schemas/chat.proto"], &["schemas"]);
//! ```
//!
//! `gonet::include_protos!()` then brings in one module per package with:
//!
//! - the message structs (prost) with serde derives, and for each message with an id an
//!   `impl gonet::Message`, so every codec (protobuf, JSON, XML, binary) carries it;
//! - per service, a handler trait (`SayService`) with one method per rpc, a
//!   `SayServiceServer` that routes the requests to it (`Router::service`), and a typed
//!   `SayServiceClient`. An rpc returning `google.protobuf.Empty` is one-way: its client
//!   method is `async` like a call's, and returns once the message is queued.
//!
//! Nothing needs `protoc`: files are parsed by protox, `gonet/options.proto` and the
//! well-known types resolve without being copied.
//!
//! # Well-known types
//!
//! Fields of the well-known types hold [`prost_types`](https://docs.rs/prost-types)'
//! structs (`prost_types::Timestamp`, with its `SystemTime` conversions;
//! `prost_types::Duration`, with `std::time::Duration`'s), so generated messages mix
//! with any other prost code. As prost-build does, the wrappers are plain values
//! (`google.protobuf.StringValue` is an `Option<String>`) and `google.protobuf.Empty`
//! is `()`. For the serde codecs, the run also writes serde-capable copies of the
//! well-known types into a `gonet_wkt` module beside the packages' modules; a value
//! passes through its copy on its way to JSON, XML or MessagePack.
//!
//! # Message forms per codec
//!
//! - protobuf: prost's encoding, byte-compatible with every protobuf implementation.
//! - protojson (`Codec::ProtoJson`, gonet's `protojson` feature): the canonical proto3
//!   JSON mapping, what protobuf's JavaScript, Python and Java libraries read and write.
//!   The run embeds the files' descriptors (`gonet_protos.descriptors.bin`, the
//!   `GONET_DESCRIPTORS` static of each package) for it.
//! - JSON (`Codec::Json`) and XML: what Go's `encoding/json` writes for a protoc-gen-go
//!   struct, so a Go gonet peer reads and writes the same bodies. Keys are the field
//!   names exactly as written in the `.proto` file (`user_name`, `userId`); on input the
//!   lowerCamel `json_name` (`userName`) is read too. Zero values (`0`, `false`, `""`,
//!   empty bytes), absent optional fields and empty repeated fields and maps are left
//!   out and read back as zero, absent or empty; a zero written out reads as well.
//!   `bytes` are base64 text, map values too (standard alphabet, padded; URL-safe and
//!   unpadded text and a list of numbers read too). Enums and 64-bit integers are numbers. A oneof is
//!   `{"case": "Word", "value": ..}` (XML `<choice><case>Word</case><value>..</value>`);
//!   an XML map is a list of `<key>`/`<value>` entries, so any key type works. A JSON key
//!   that matches no field is skipped, as Go skips it, and reported: a debug-level log
//!   line naming its path and the `gonet_codec_ignored_keys_total` counter. Well-known
//!   types are plain messages, as Go writes them (`{"seconds": 1, "nanos": 5}`); an
//!   `Empty` is `{}`.
//! - binary: MessagePack with field names (the runtime's binary codec).
//!
//! A value a codec cannot carry fails to encode with an error naming the message rather
//! than arriving changed: a NaN or infinite number in JSON, a carriage return in XML text.
//! The generated code needs gonet's `protobuf` feature (prost derives the structs).
//!
//! # Build errors
//!
//! One run reports every problem, each with its `.proto` file and line: syntax errors
//! (with the lines around them), missing imports, duplicate ids across all files, ids
//! that are 0 or reserved (`0xFFFFFF00` and up), messages used by a service without an
//! id, one request type taken by two rpcs of a service, and streaming rpcs.
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | `model` | the schema model: [`Schema`], [`MessageDef`], [`ServiceDef`], [`MethodDef`] |
//! | `frontend` | `.proto` files to the model (protox, prost-reflect) |
//! | `validate` | the checks on the model |
//! | `generate` | the model to Rust items (syn, quote) |
//! | `builder` | [`Builder`]: options, prost-build, formatting, writing |
//! | `error` | [`BuildError`], [`Problem`] |

#![warn(missing_docs)]

mod builder;
mod error;
mod frontend;
mod generate;
mod model;
mod validate;

#[cfg(test)]
mod tests;

pub use builder::{AttributeTarget, Builder, Codec};
pub use error::{BuildError, Problem, ProblemKind};
pub use model::{EMPTY, Location, MessageDef, MethodDef, Schema, ServiceDef};

/// The text of `gonet/options.proto`, which defines the `(gonet.id)` message option.
pub const OPTIONS_PROTO: &str = frontend::OPTIONS_PROTO;

/// Generates Rust for `protos` with the default [`Builder`]. For `build.rs`: on any
/// problem it panics with the full list, each problem naming its file and line.
///
/// ```no_run
/// gonet_build::compile(&["schemas/chat.proto"], &["schemas"]);
/// ```
pub fn compile(protos: &[impl AsRef<std::path::Path>], includes: &[impl AsRef<std::path::Path>]) {
    if let Err(err) = Builder::new().compile(protos, includes) {
        panic!("{err}");
    }
}

/// Parses `protos` against `includes` and runs the same checks as [`compile`], without
/// generating anything: the schema model of a set of files, or every problem in them,
/// each with its file (as imported) and line. For tools that list or check ids.
///
/// ```no_run
/// let schema = gonet_build::inspect(&["schemas/chat.proto"], &["schemas"])?;
/// for msg in schema.messages.iter().filter(|m| m.id.is_some()) {
///     println!("{:?} {} {}", msg.id, msg.full_name(), msg.location);
/// }
/// # Ok::<(), gonet_build::BuildError>(())
/// ```
pub fn inspect(
    protos: &[impl AsRef<std::path::Path>],
    includes: &[impl AsRef<std::path::Path>],
) -> Result<Schema, BuildError> {
    let protos: Vec<_> = protos.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let includes: Vec<_> = includes.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let parsed =
        frontend::parse(&protos, &includes).map_err(|(problems, _)| BuildError::new(problems))?;
    let problems = validate::check(&parsed.schema);
    if problems.is_empty() {
        Ok(parsed.schema)
    } else {
        Err(BuildError::new(problems))
    }
}

/// Checks `schema` and generates its gonet items (message impls, service traits,
/// servers and clients) per package, without prost's structs. For tests and other
/// front ends.
///
/// ```
/// use gonet_build::{Location, MessageDef, Schema};
/// let schema = Schema {
///     messages: vec![MessageDef {
///         package: "chat".into(),
///         name: "Say".into(),
///         id: Some(101),
///         location: Location::new("chat.proto", 5),
///     }],
///     services: vec![],
/// };
/// let code = gonet_build::generate_items(&schema).unwrap();
/// assert!(code["chat"].contains("const ID: u32 = 101;"));
/// ```
pub fn generate_items(
    schema: &Schema,
) -> Result<std::collections::BTreeMap<String, String>, BuildError> {
    let problems = validate::check(schema);
    if !problems.is_empty() {
        return Err(BuildError::new(problems));
    }
    Ok(generate::generate(schema, &generate::GenConfig::default())
        .into_iter()
        .map(|(package, tokens)| {
            let text = match syn::parse2::<syn::File>(tokens.clone()) {
                Ok(file) => prettyplease::unparse(&file),
                Err(_) => tokens.to_string(),
            };
            (package, text)
        })
        .collect())
}
