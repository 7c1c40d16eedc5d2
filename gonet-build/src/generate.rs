//! The generator: from the [`Schema`] model to Rust items, built from small `quote!`
//! pieces. It knows nothing of `.proto` files.

use std::collections::BTreeMap;

use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::{MessageDef, MethodDef, Schema, ServiceDef};

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GenConfig {
    /// Handler traits and `XServer` types.
    pub(crate) server: bool,
    /// `XClient` types.
    pub(crate) client: bool,
    /// prost glue: the protobuf codec.
    pub(crate) protobuf: bool,
    /// serde glue: the JSON, XML and binary codecs.
    pub(crate) serde: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            server: true,
            client: true,
            protobuf: true,
            serde: true,
        }
    }
}

/// The generated items of every package, by package name.
pub(crate) fn generate(schema: &Schema, config: &GenConfig) -> BTreeMap<String, TokenStream> {
    let mut out: BTreeMap<String, TokenStream> = BTreeMap::new();
    for msg in schema.messages.iter().filter(|m| m.id.is_some()) {
        let tokens = message_impl(msg, config);
        out.entry(msg.package.clone()).or_default().extend(tokens);
    }

    for svc in &schema.services {
        let tokens = service(schema, svc, config);
        out.entry(svc.package.clone()).or_default().extend(tokens);
    }
    out
}

/// The static holding the encoded `FileDescriptorSet` that a package's messages are
/// `Described` by, read from `file` (an expression of type `&'static [u8]`).
pub(crate) fn descriptors_static(bytes: &TokenStream) -> TokenStream {
    quote! {
        /// The descriptors of the `.proto` files this module was generated from.
        #[doc(hidden)]
        pub static GONET_DESCRIPTORS: ::gonet::codegen::Descriptors =
            ::gonet::codegen::Descriptors::new(#bytes);
    }
}

/// The Rust module path of a proto package, as prost-build names it.
pub(crate) fn module_parts(package: &str) -> Vec<String> {
    package
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| sanitize(&p.to_snake_case()))
        .collect()
}

/// A Rust identifier as prost-build spells it (keywords raw or suffixed).
fn sanitize(ident: &str) -> String {
    match ident {
        "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for" | "if"
        | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub" | "ref"
        | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe" | "use"
        | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do" | "final" | "macro"
        | "override" | "priv" | "typeof" | "unsized" | "virtual" | "yield" | "async" | "await"
        | "try" | "gen" => format!("r#{ident}"),
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{ident}_"),
        s if s.starts_with(|c: char| c.is_numeric()) => format!("_{ident}"),
        _ => ident.to_owned(),
    }
}

/// The path of message `full_name` seen from the module of package `from`.
fn type_path(schema: &Schema, from: &str, full_name: &str) -> TokenStream {
    let (package, name) = match schema.messages.iter().find(|m| m.full_name() == full_name) {
        Some(m) => (m.package.clone(), m.name.clone()),
        None => match full_name.rsplit_once('.') {
            Some((p, n)) => (p.to_owned(), n.to_owned()),
            None => (String::new(), full_name.to_owned()),
        },
    };
    let mut target = module_parts(&package);
    let mut names: Vec<&str> = name.split('.').collect();
    let last = names.pop().unwrap_or_default();
    target.extend(names.iter().map(|n| sanitize(&n.to_snake_case())));
    let here = module_parts(from);
    let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut segments: Vec<String> = vec!["super".to_owned(); here.len() - common];
    segments.extend(target[common..].iter().cloned());
    segments.push(sanitize(&last.to_upper_camel_case()));
    let path = segments.join("::");
    syn::parse_str::<syn::Path>(&path)
        .map(|p| quote!(#p))
        .unwrap_or_else(|_| {
            let ident = format_ident!("{}", last.to_upper_camel_case());
            quote!(#ident)
        })
}

/// `#[doc = ".."]` lines from a proto comment, or `fallback` when there is none.
fn doc(comment: &str, fallback: &str) -> TokenStream {
    let text = if comment.trim().is_empty() {
        fallback.to_owned()
    } else {
        comment.trim_end().to_owned()
    };
    let lines = text.lines().map(|line| {
        let line = line.trim_end();
        let line = if line.starts_with(' ') || line.is_empty() {
            line.to_owned()
        } else {
            format!(" {line}")
        };
        quote!(#[doc = #line])
    });
    quote!(#(#lines)*)
}

/// The `# Errors` section of a generated method's docs.
fn errors_doc(text: &str) -> TokenStream {
    let text = format!(" {text}");
    quote! {
        #[doc = ""]
        #[doc = " # Errors"]
        #[doc = ""]
        #[doc = #text]
    }
}

fn format_type(config: &GenConfig) -> TokenStream {
    match (config.protobuf, config.serde) {
        (true, true) => quote!(::gonet::codegen::GeneratedFormat),
        (true, false) => quote!(::gonet::codegen::ProstFormat),
        _ => quote!(::gonet::codegen::SerdeFormat),
    }
}

fn message_impl(msg: &MessageDef, config: &GenConfig) -> TokenStream {
    let Some(id) = msg.id else {
        return TokenStream::new();
    };
    let schema = Schema {
        messages: vec![msg.clone()],
        services: vec![],
    };
    let full = msg.full_name();
    let path = type_path(&schema, &msg.package, &full);
    let format = format_type(config);
    let id = proc_macro2::Literal::u32_unsuffixed(id);
    // The package's descriptors, for the `protojson` codec (see `descriptors_static`).
    let described = if config.protobuf && config.serde {
        quote! {
            impl ::gonet::codegen::Described for #path {
                fn descriptors() -> &'static ::gonet::codegen::Descriptors {
                    &GONET_DESCRIPTORS
                }
            }
        }
    } else {
        TokenStream::new()
    };
    quote! {
        #described

        impl ::gonet::codegen::Message for #path {
            const ID: u32 = #id;
            const NAME: &'static str = #full;

            fn encode_body(
                &self,
                codec: ::gonet::codegen::Codec,
                dst: &mut ::gonet::codegen::BytesMut,
            ) -> ::core::result::Result<(), ::gonet::codegen::CodecError> {
                ::gonet::codegen::encode::<#format, Self>(self, codec, dst)
            }

            fn decode_body(
                codec: ::gonet::codegen::Codec,
                body: ::gonet::Body<'_>,
            ) -> ::core::result::Result<Self, ::gonet::codegen::CodecError> {
                ::gonet::codegen::decode::<#format, Self>(codec, body)
            }
        }
    }
}

fn method_ident(method: &MethodDef) -> syn::Ident {
    let name = sanitize(&method.name.to_snake_case());
    match name.strip_prefix("r#") {
        Some(raw) => syn::Ident::new_raw(raw, proc_macro2::Span::call_site()),
        None => format_ident!("{}", name),
    }
}

fn service(schema: &Schema, svc: &ServiceDef, config: &GenConfig) -> TokenStream {
    let mut out = TokenStream::new();
    if config.server {
        out.extend(service_trait(schema, svc));
        out.extend(service_server(schema, svc));
    }
    if config.client {
        out.extend(service_client(schema, svc));
    }
    out
}

fn service_trait(schema: &Schema, svc: &ServiceDef) -> TokenStream {
    let name = format_ident!("{}", svc.name.to_upper_camel_case());
    let server = format_ident!("{}Server", svc.name.to_upper_camel_case());
    let trait_doc = doc(
        &svc.doc,
        &format!("The handlers of service `{}`.", svc.full_name()),
    );
    let methods = svc.methods.iter().map(|m| {
        let ident = method_ident(m);
        let req = type_path(schema, &svc.package, &m.input);
        let reply = if m.is_one_way() {
            quote!(())
        } else {
            type_path(schema, &svc.package, &m.output)
        };
        let fallback = if m.is_one_way() {
            format!(
                "Handles `{}` (rpc `{}`). One-way: nothing is sent back.",
                m.input, m.name
            )
        } else {
            format!(
                "Handles `{}` (rpc `{}`); the `Ok` value is sent back as the reply.",
                m.input, m.name
            )
        };
        let method_doc = doc(&m.doc, &fallback);
        quote! {
            #method_doc
            fn #ident(
                &self,
                session: &::gonet::codegen::Session,
                req: #req,
            ) -> impl ::gonet::codegen::Future<
                Output = ::core::result::Result<#reply, ::gonet::codegen::Status>,
            > + Send;
        }
    });
    let serve_doc = format!(
        " Serve it by adding [`{server}::new`] to a router: `Router::new().service({server}::new(svc))`."
    );
    quote! {
        #trait_doc
        #[doc = ""]
        #[doc = #serve_doc]
        pub trait #name: Send + Sync + 'static {
            #(#methods)*
        }
    }
}

fn service_server(schema: &Schema, svc: &ServiceDef) -> TokenStream {
    let name = format_ident!("{}", svc.name.to_upper_camel_case());
    let server = format_ident!("{}Server", svc.name.to_upper_camel_case());
    let server_name = server.to_string();
    let doc_line = format!(
        " Routes the requests of service `{}` to a [`{name}`] implementation.",
        svc.full_name()
    );
    let routes = svc.methods.iter().map(|m| {
        let ident = method_ident(m);
        let req = type_path(schema, &svc.package, &m.input);
        quote! {
            .route({
                let service = ::gonet::codegen::Arc::clone(&inner);
                move |session: ::gonet::codegen::Session, req: #req| {
                    let service = ::gonet::codegen::Arc::clone(&service);
                    async move { service.#ident(&session, req).await }
                }
            })
        }
    });
    let register = if svc.methods.is_empty() {
        quote! {
            let _ = self;
            router
        }
    } else {
        quote! {
            let inner = self.inner;
            router #(#routes)*
        }
    };
    let ids = svc.methods.iter().map(|m| {
        let req = type_path(schema, &svc.package, &m.input);
        quote!(<#req as ::gonet::codegen::Message>::ID)
    });
    quote! {
        #[doc = #doc_line]
        pub struct #server<S> {
            inner: ::gonet::codegen::Arc<S>,
        }

        impl<S: #name> #server<S> {
            /// The message ids this service routes, one per rpc.
            pub const IDS: &'static [u32] = &[#(#ids),*];

            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self::from_arc(::gonet::codegen::Arc::new(service))
            }

            /// Serves a shared `service`.
            pub fn from_arc(service: ::gonet::codegen::Arc<S>) -> Self {
                Self { inner: service }
            }
        }

        impl<S> ::core::clone::Clone for #server<S> {
            fn clone(&self) -> Self {
                Self { inner: ::gonet::codegen::Arc::clone(&self.inner) }
            }
        }

        impl<S> ::core::fmt::Debug for #server<S> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(#server_name)
            }
        }

        impl<S: #name> ::gonet::codegen::Service for #server<S> {
            fn register(self, router: ::gonet::codegen::Router) -> ::gonet::codegen::Router {
                #register
            }
        }
    }
}

fn service_client(schema: &Schema, svc: &ServiceDef) -> TokenStream {
    let client = format_ident!("{}Client", svc.name.to_upper_camel_case());
    let doc_line = format!(
        " Calls service `{}` on the peer of a session.",
        svc.full_name()
    );
    let methods = svc.methods.iter().map(|m| {
        let ident = method_ident(m);
        let req = type_path(schema, &svc.package, &m.input);
        if m.is_one_way() {
            let method_doc = doc(
                &m.doc,
                &format!(
                    "Sends `{}` (rpc `{}`); one-way, nothing comes back. Returns once the \
                     message is queued; `async` like every rpc of a client, so that each \
                     is awaited the same way.",
                    m.input, m.name
                ),
            );
            let errors = errors_doc(
                "`SendError` when the session is closed, the peer is not reading or the \
                 message does not encode.",
            );
            quote! {
                #method_doc
                #errors
                #[allow(clippy::unused_async, reason = "one calling convention for every rpc")]
                pub async fn #ident(&self, req: #req) -> ::core::result::Result<(), ::gonet::codegen::SendError> {
                    self.session.send(&req)
                }
            }
        } else {
            let reply = type_path(schema, &svc.package, &m.output);
            let method_doc = doc(
                &m.doc,
                &format!("Calls rpc `{}`: sends `{}` and waits for `{}`.", m.name, m.input, m.output),
            );
            let errors = errors_doc(
                "`CallError` when the request cannot be sent, no reply comes within the \
                 timeout, the session closes first, or the handler answers with a `Status`.",
            );
            quote! {
                #method_doc
                #errors
                pub async fn #ident(&self, req: #req) -> ::core::result::Result<#reply, ::gonet::codegen::CallError> {
                    match self.timeout {
                        ::core::option::Option::Some(timeout) => self.session.call_timeout(&req, timeout).await,
                        ::core::option::Option::None => self.session.call(&req).await,
                    }
                }
            }
        }
    });
    quote! {
        #[doc = #doc_line]
        #[derive(Clone, Debug)]
        pub struct #client {
            session: ::gonet::codegen::Session,
            timeout: ::core::option::Option<::gonet::codegen::Duration>,
        }

        impl #client {
            /// A client over `session`, with the session's call timeout.
            #[must_use]
            pub fn new(session: ::gonet::codegen::Session) -> Self {
                Self { session, timeout: ::core::option::Option::None }
            }

            /// Waits at most `timeout` for each reply.
            #[must_use]
            pub fn timeout(mut self, timeout: ::gonet::codegen::Duration) -> Self {
                self.timeout = ::core::option::Option::Some(timeout);
                self
            }

            /// The session the calls go through.
            #[must_use]
            pub fn session(&self) -> &::gonet::codegen::Session {
                &self.session
            }

            #(#methods)*
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EMPTY, Location};

    fn message(package: &str, name: &str, id: Option<u32>) -> MessageDef {
        MessageDef {
            package: package.into(),
            name: name.into(),
            id,
            location: Location::new("x.proto", 1),
        }
    }

    fn schema() -> Schema {
        Schema {
            messages: vec![
                message("game.lobby", "Enter", Some(1)),
                message("game.lobby", "Room.Seat", Some(2)),
                message("common", "Ping", Some(3)),
                message("game.lobby", "Bye", Some(4)),
            ],
            services: vec![ServiceDef {
                package: "game.lobby".into(),
                name: "lobby_service".into(),
                doc: " Lobby things.\n".into(),
                methods: vec![
                    MethodDef {
                        name: "Enter".into(),
                        input: "game.lobby.Enter".into(),
                        output: "game.lobby.Room.Seat".into(),
                        doc: " Takes a seat.\n".into(),
                        ..Default::default()
                    },
                    MethodDef {
                        name: "Ping".into(),
                        input: "common.Ping".into(),
                        output: "common.Ping".into(),
                        ..Default::default()
                    },
                    MethodDef {
                        name: "Bye".into(),
                        input: "game.lobby.Bye".into(),
                        output: EMPTY.into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }
    }

    fn code(config: &GenConfig) -> String {
        let tokens = generate(&schema(), config)
            .remove("game.lobby")
            .expect("package");
        prettyplease::unparse(&syn::parse2(tokens).expect("parses"))
    }

    #[test]
    fn paths_are_relative_to_the_package_module() {
        let code = code(&GenConfig::default());
        assert!(
            code.contains("impl ::gonet::codegen::Message for room::Seat"),
            "{code}"
        );
        assert!(code.contains("req: super::super::common::Ping"), "{code}");
        assert!(code.contains("const NAME: &'static str = \"game.lobby.Room.Seat\";"));
    }

    #[test]
    fn the_trait_has_send_futures_and_docs() {
        let code = code(&GenConfig::default());
        assert!(
            code.contains("pub trait LobbyService: Send + Sync + 'static"),
            "{code}"
        );
        assert!(code.contains("/// Lobby things."), "{code}");
        assert!(code.contains("/// Takes a seat."), "{code}");
        assert!(code.contains(
            "Output = ::core::result::Result<room::Seat, ::gonet::codegen::Status>,\n    > + Send;"
        ), "{code}");
        // One-way: the handler's Ok is (), the client's method is async like a call's
        // and waits for nothing but the queue.
        assert!(code.contains("Output = ::core::result::Result<(), ::gonet::codegen::Status>"));
        assert!(code.contains(
            "pub async fn bye(\n        &self,\n        req: Bye,\n    ) -> ::core::result::Result<(), ::gonet::codegen::SendError>"
        ), "{code}");
        assert!(code.contains("pub async fn enter("), "{code}");
        assert!(code.contains("pub const IDS: &'static [u32]"), "{code}");
    }

    #[test]
    fn server_and_client_can_be_left_out() {
        let no_client = code(&GenConfig {
            client: false,
            ..GenConfig::default()
        });
        assert!(!no_client.contains("LobbyServiceClient"));
        assert!(no_client.contains("LobbyServiceServer"));
        let no_server = code(&GenConfig {
            server: false,
            ..GenConfig::default()
        });
        assert!(!no_server.contains("LobbyServiceServer"));
        assert!(!no_server.contains("pub trait LobbyService"));
        assert!(no_server.contains("pub struct LobbyServiceClient"));
    }

    #[test]
    fn the_codecs_choose_the_body_format() {
        let format = |protobuf, serde| {
            let code = code(&GenConfig {
                protobuf,
                serde,
                ..GenConfig::default()
            });
            ["GeneratedFormat", "ProstFormat", "SerdeFormat"]
                .into_iter()
                .find(|f| code.contains(f))
                .expect("a format")
        };
        assert_eq!(format(true, true), "GeneratedFormat");
        assert_eq!(format(true, false), "ProstFormat");
        assert_eq!(format(false, true), "SerdeFormat");
    }

    #[test]
    fn a_service_without_rpcs_still_compiles_cleanly() {
        let schema = Schema {
            messages: vec![],
            services: vec![ServiceDef {
                package: "p".into(),
                name: "Nothing".into(),
                ..Default::default()
            }],
        };
        let tokens = generate(&schema, &GenConfig::default())
            .remove("p")
            .expect("package");
        let code = prettyplease::unparse(&syn::parse2(tokens).expect("parses"));
        assert!(code.contains("let _ = self;\n        router\n"), "{code}");
        assert!(
            code.contains("pub const IDS: &'static [u32] = &[];"),
            "{code}"
        );
    }

    #[test]
    fn keywords_become_raw_identifiers() {
        let method = MethodDef {
            name: "Where".into(),
            ..Default::default()
        };
        assert_eq!(method_ident(&method).to_string(), "r#where");
        assert_eq!(module_parts("my.Type.self"), ["my", "r#type", "self_"]);
    }
}
