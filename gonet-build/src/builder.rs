//! [`Builder`]: the options of one code generation run, and the run itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost_build::Module;

use crate::error::{BuildError, Problem, ProblemKind};
use crate::frontend::{self, FieldShape, FieldValue, WktHolder};
use crate::generate::{self, GenConfig};

/// A body codec whose glue the generated messages get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Protocol Buffers (prost).
    Protobuf,
    /// JSON (serde).
    Json,
    /// XML (serde).
    Xml,
    /// The compact binary format (serde).
    Binary,
}

/// What kind of item an extra attribute goes on; see [`Builder::attribute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributeTarget {
    /// Messages, enums and oneofs.
    Type,
    /// Messages.
    Message,
    /// Enums and oneofs.
    Enum,
    /// Fields.
    Field,
}

/// The options of a generation run.
///
/// ```no_run
/// // build.rs
/// gonet_build::Builder::new()
///     .codecs([gonet_build::Codec::Protobuf, gonet_build::Codec::Json])
///     .client(false)
///     .attribute(gonet_build::AttributeTarget::Message, ".chat.Say", "#[derive(Eq)]")
///     .compile(&["schemas/chat.proto"], &["schemas"])
///     .unwrap_or_else(|err| panic!("{err}"));
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    include_file: String,
    codecs: Vec<Codec>,
    server: bool,
    client: bool,
    attributes: Vec<(AttributeTarget, String, String)>,
    rerun_if_changed: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            out_dir: None,
            include_file: "gonet_protos.rs".to_owned(),
            codecs: vec![Codec::Protobuf, Codec::Json, Codec::Xml, Codec::Binary],
            server: true,
            client: true,
            attributes: Vec::new(),
            rerun_if_changed: true,
        }
    }
}

impl Builder {
    /// The defaults: glue for every codec, servers and clients, output in `OUT_DIR`,
    /// `cargo:rerun-if-changed` printed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the generated files to `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// The name of the file that includes every package's module
    /// (`gonet_protos.rs`, which `gonet::include_protos!()` includes).
    pub fn include_file(mut self, name: impl Into<String>) -> Self {
        self.include_file = name.into();
        self
    }

    /// The codecs the messages get glue for. JSON, XML and binary share the serde glue;
    /// protobuf uses prost's. A codec without glue refuses the message at run time with
    /// a clear error.
    pub fn codecs(mut self, codecs: impl IntoIterator<Item = Codec>) -> Self {
        self.codecs = codecs.into_iter().collect();
        self
    }

    /// Whether to generate the handler traits and `XServer` types (default on).
    pub fn server(mut self, on: bool) -> Self {
        self.server = on;
        self
    }

    /// Whether to generate the `XClient` types (default on).
    pub fn client(mut self, on: bool) -> Self {
        self.client = on;
        self
    }

    /// Adds an attribute to the items matching a proto path (`.chat.Say`, `.chat`,
    /// `.` for all), as prost-build matches paths.
    pub fn attribute(
        mut self,
        target: AttributeTarget,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Self {
        self.attributes
            .push((target, path.into(), attribute.into()));
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for every `.proto` file read (default on).
    pub fn emit_rerun_if_changed(mut self, on: bool) -> Self {
        self.rerun_if_changed = on;
        self
    }

    /// Generates Rust for `protos` (paths of `.proto` files), resolving imports in
    /// `includes`. `gonet/options.proto` and `google/protobuf/*.proto` resolve on their
    /// own. Every problem of the run is in the error, each with its file and line.
    pub fn compile(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), BuildError> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let config = self.gen_config()?;
        self.check_attributes()?;
        let parsed = match frontend::parse(&protos, &includes) {
            Ok(parsed) => parsed,
            Err((problems, sources)) => {
                self.rerun(&sources);
                return Err(BuildError::new(problems));
            }
        };
        self.rerun(&parsed.sources);
        let problems = crate::validate::check(&parsed.schema);
        if !problems.is_empty() {
            return Err(BuildError::new(problems));
        }
        let out_dir = self.target_dir()?;
        // Named after the include file, so two runs into one directory keep theirs.
        let descriptors_file = format!(
            "{}.descriptors.bin",
            self.include_file.trim_end_matches(".rs")
        );
        let descriptors = if self.out_dir.is_none() {
            quote::quote!(include_bytes!(
                concat!(env!("OUT_DIR"), "/", #descriptors_file)
            ))
        } else {
            let path = out_dir.join(&descriptors_file);
            let path = std::path::absolute(&path).unwrap_or(path);
            let path = path.display().to_string();
            quote::quote!(include_bytes!(#path))
        };
        let files = self.render(&parsed, &config, &descriptors)?;
        write_all(&out_dir, files, &self.include_file, self.out_dir.is_none())?;
        let path = out_dir.join(&descriptors_file);
        let bytes = parsed.descriptor_bytes();
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        std::fs::write(&path, bytes)
            .map_err(|e| output_problem(format!("cannot write {}: {e}", path.display())))
    }

    fn gen_config(&self) -> Result<GenConfig, BuildError> {
        if self.codecs.is_empty() {
            return Err(BuildError::new(vec![Problem {
                location: None,
                kind: ProblemKind::Config(
                    "no codec selected: give Builder::codecs at least one".into(),
                ),
                snippet: None,
            }]));
        }
        Ok(GenConfig {
            server: self.server,
            client: self.client,
            protobuf: self.codecs.contains(&Codec::Protobuf),
            serde: self
                .codecs
                .iter()
                .any(|c| matches!(c, Codec::Json | Codec::Xml | Codec::Binary)),
        })
    }

    /// Refuses extra attributes that are not Rust attributes, before they reach the
    /// generated code.
    fn check_attributes(&self) -> Result<(), BuildError> {
        let problems: Vec<Problem> = self
            .attributes
            .iter()
            .filter(|(_, _, attribute)| {
                syn::parse::Parser::parse_str(syn::Attribute::parse_outer, attribute)
                    .map_or(true, |attrs| attrs.is_empty())
            })
            .map(|(target, path, attribute)| Problem {
                location: None,
                kind: ProblemKind::Config(format!(
                    "the {target:?} attribute {attribute:?} for {path} is not a Rust attribute such as `#[derive(Eq)]`"
                )),
                snippet: None,
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BuildError::new(problems))
        }
    }

    fn rerun(&self, sources: &[PathBuf]) {
        if self.rerun_if_changed {
            for source in sources {
                println!("cargo:rerun-if-changed={}", source.display());
            }
        }
    }

    fn target_dir(&self) -> Result<PathBuf, BuildError> {
        match &self.out_dir {
            Some(dir) => Ok(dir.clone()),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    BuildError::new(vec![Problem {
                        location: None,
                        kind: ProblemKind::Config(
                            "OUT_DIR is not set: run from build.rs or give Builder::out_dir".into(),
                        ),
                        snippet: None,
                    }])
                }),
        }
    }

    /// The prost structs plus our items, per module, formatted.
    fn render(
        &self,
        parsed: &frontend::Parsed,
        config: &GenConfig,
        descriptors: &proc_macro2::TokenStream,
    ) -> Result<BTreeMap<Vec<String>, String>, BuildError> {
        // The user's files refer to the well-known types of `prost_types`, so they mix
        // with any other prost code. The serde codecs write those through copies of
        // them generated with serde derives into `gonet_wkt` (see `FieldValue::Wkt`).
        // prost-build needs the well-known files to know the types it refers to; their
        // structs, generated too, are dropped.
        let wkt_files: Vec<_> = parsed
            .files
            .file
            .iter()
            .filter(|f| frontend::is_wkt_file(f.name()))
            .cloned()
            .collect();
        let mut by_parts = self.run_prost(parsed, config, parsed.files.file.clone(), false)?;
        by_parts.remove(&vec!["google".to_owned(), "protobuf".to_owned()]);
        if config.serde && !wkt_files.is_empty() {
            for (_, code) in self.run_prost(parsed, config, wkt_files, true)? {
                by_parts
                    .entry(vec![WKT_MODULE.to_owned()])
                    .or_default()
                    .push_str(&code);
            }
        }
        for (package, mut tokens) in generate::generate(&parsed.schema, config) {
            if config.protobuf && config.serde {
                tokens.extend(generate::descriptors_static(descriptors));
            }
            let parts = generate::module_parts(&package);
            by_parts
                .entry(parts)
                .or_default()
                .push_str(&format!("\n{tokens}\n"));
        }
        let mut out = BTreeMap::new();
        for (parts, code) in by_parts {
            let file = syn::parse_file(&code).map_err(|e| {
                output_problem(format!(
                    "generated code for package {} does not parse: {e}",
                    parts.join(".")
                ))
            })?;
            let text = format!(
                "// Generated by gonet-build from .proto files. Do not edit.\n{}",
                prettyplease::unparse(&file)
            );
            out.insert(parts, text);
        }
        Ok(out)
    }
}

impl Builder {
    /// prost-build's structs for `files`, with the serde glue; `wkt`: the files are
    /// the well-known types, generated as the serde-capable copies of `gonet_wkt`.
    fn run_prost(
        &self,
        parsed: &frontend::Parsed,
        config: &GenConfig,
        files: Vec<prost_types::FileDescriptorProto>,
        wkt: bool,
    ) -> Result<BTreeMap<Vec<String>, String>, BuildError> {
        let mut prost = prost_build::Config::new();
        prost.prost_path("::gonet::codegen::prost");
        if wkt {
            prost.compile_well_known_types();
        } else {
            prost.prost_types_path("::gonet::codegen::prost_types");
        }
        if config.serde {
            prost.message_attribute(
                ".",
                "#[derive(::gonet::codegen::serde::Serialize, ::gonet::codegen::serde::Deserialize)]\n#[serde(crate = \"::gonet::codegen::serde\", default)]",
            );
            prost.enum_attribute(
                ".",
                "#[derive(::gonet::codegen::serde::Serialize, ::gonet::codegen::serde::Deserialize)]\n#[serde(crate = \"::gonet::codegen::serde\")]",
            );
            for oneof in &parsed.oneofs {
                // XML has no notion of an enum: name the variant and its value
                // explicitly so every codec reads back what it wrote.
                prost.enum_attribute(oneof, "#[serde(tag = \"case\", content = \"value\")]");
            }
            for (path, names) in &parsed.names {
                let path = path.trim_start_matches('.');
                let with =
                    |helper: &str| format!("#[serde(with = \"::gonet::codegen::{helper}\")]");
                let up = names.package_depth + names.depth;
                if names.oneof_member {
                    // A variant keeps its case name; only its value may need help.
                    match &names.value {
                        FieldValue::Zeroable { bytes: true } => {
                            prost.field_attribute(path, with("base64_bytes"));
                        }
                        FieldValue::Wkt { name, holder } => {
                            prost.field_attribute(path, wkt_attribute(name, *holder, up));
                        }
                        _ => {}
                    }
                    continue;
                }
                // The names of the `.proto` file, as Go's encoding/json writes them
                // for protoc-gen-go structs; the lowerCamel JSON name is read too.
                let mut rename = format!("#[serde(rename = {:?}", names.proto);
                if names.json != names.proto {
                    rename.push_str(&format!(", alias = {:?}", names.json));
                }
                rename.push_str(")]");
                prost.field_attribute(path, rename);
                match &names.value {
                    FieldValue::Zeroable { bytes } => {
                        prost.field_attribute(
                            path,
                            "#[serde(skip_serializing_if = \"::gonet::codegen::is_zero\")]",
                        );
                        if *bytes {
                            prost.field_attribute(path, with("base64_bytes"));
                        }
                    }
                    FieldValue::OptionalBytes => {
                        prost.field_attribute(path, with("base64_option"));
                    }
                    FieldValue::RepeatedBytes => {
                        prost.field_attribute(path, with("base64_list"));
                    }
                    FieldValue::Empty => {
                        prost.field_attribute(path, with("empty"));
                    }
                    // Its attribute comes with the other maps' below.
                    FieldValue::MapBytes => {}
                    FieldValue::Wkt { name, holder } => {
                        prost.field_attribute(path, wkt_attribute(name, *holder, up));
                    }
                    FieldValue::Other => {}
                }
            }
            for (path, shape) in &parsed.fields {
                let skip = match shape {
                    FieldShape::Optional | FieldShape::Oneof => "::gonet::codegen::skip_none",
                    FieldShape::Collection | FieldShape::Map => "::gonet::codegen::skip_empty",
                };
                // prost-build also applies a path's attributes to every path below it,
                // and the variants of a oneof sit below the oneof's field. Without the
                // leading dot the path matches as a suffix only: the field itself.
                let path = path.trim_start_matches('.');
                prost.field_attribute(path, format!("#[serde(skip_serializing_if = \"{skip}\")]"));
                let wkt_map = parsed.names.iter().any(|(p, n)| {
                    p.trim_start_matches('.') == path
                        && matches!(
                            n.value,
                            FieldValue::Wkt {
                                holder: WktHolder::Map,
                                ..
                            }
                        )
                });
                let bytes_map = parsed.names.iter().any(|(p, n)| {
                    p.trim_start_matches('.') == path && n.value == FieldValue::MapBytes
                });
                if *shape == FieldShape::Map && bytes_map {
                    // Its values are base64 text, as every other `bytes` value.
                    prost.field_attribute(
                        path,
                        "#[serde(serialize_with = \"::gonet::codegen::serialize_bytes_map\", deserialize_with = \"::gonet::codegen::deserialize_bytes_map\")]",
                    );
                } else if *shape == FieldShape::Map && !wkt_map {
                    prost.field_attribute(
                        path,
                        "#[serde(serialize_with = \"::gonet::codegen::serialize_map\", deserialize_with = \"::gonet::codegen::deserialize_map\")]",
                    );
                }
            }
        }
        for (target, path, attribute) in &self.attributes {
            match target {
                AttributeTarget::Type => prost.type_attribute(path, attribute),
                AttributeTarget::Message => prost.message_attribute(path, attribute),
                AttributeTarget::Enum => prost.enum_attribute(path, attribute),
                AttributeTarget::Field => prost.field_attribute(path, attribute),
            };
        }
        let requests = files
            .into_iter()
            .map(|f| (Module::from_protobuf_package_name(f.package()), f))
            .collect();
        let modules = prost
            .generate(requests)
            .map_err(|e| output_problem(format!("prost-build failed: {e}")))?;
        Ok(modules
            .into_iter()
            .map(|(m, code)| (m.parts().map(str::to_owned).collect(), code))
            .collect())
    }
}

/// The module of the serde-capable copies of the well-known types.
const WKT_MODULE: &str = "gonet_wkt";

/// The serde attribute of a field holding a well-known type `name` through `holder`,
/// from an item `up` modules below the one that holds `gonet_wkt`.
fn wkt_attribute(name: &str, holder: WktHolder, up: usize) -> String {
    let mirror = format!("{}{WKT_MODULE}::{name}", "super::".repeat(up));
    let (helper, rest) = match holder {
        WktHolder::Option => ("option", "_, _"),
        WktHolder::List => ("list", "_, _"),
        WktHolder::Map => ("map", "_, _, _"),
        WktHolder::One => ("one", "_, _"),
    };
    format!(
        "#[serde(serialize_with = \"::gonet::codegen::wkt::{helper}_ser::<{mirror}, {rest}>\", \
         deserialize_with = \"::gonet::codegen::wkt::{helper}_de::<{mirror}, {rest}>\")]"
    )
}

fn output_problem(message: String) -> BuildError {
    BuildError::new(vec![Problem {
        location: None,
        kind: ProblemKind::Output(message),
        snippet: None,
    }])
}

fn file_name(parts: &[String]) -> String {
    if parts.is_empty() {
        "_.rs".to_owned()
    } else {
        format!("{}.rs", parts.join("."))
    }
}

/// Writes each module and the include file, touching only files whose text changed.
fn write_all(
    dir: &Path,
    files: BTreeMap<Vec<String>, String>,
    include_file: &str,
    dir_is_out_dir: bool,
) -> Result<(), BuildError> {
    let write = |path: PathBuf, text: &str| -> Result<(), BuildError> {
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(());
        }
        std::fs::write(&path, text)
            .map_err(|e| output_problem(format!("cannot write {}: {e}", path.display())))
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| output_problem(format!("cannot create {}: {e}", dir.display())))?;
    let mut include = String::from("// Generated by gonet-build. Do not edit.\n");
    let mut open: Vec<String> = Vec::new();
    for (parts, text) in &files {
        let name = file_name(parts);
        write(dir.join(&name), text)?;
        let common = open.iter().zip(parts).take_while(|(a, b)| a == b).count();
        while open.len() > common {
            open.pop();
            include.push_str(&format!("{}}}\n", "    ".repeat(open.len())));
        }
        for part in &parts[common..] {
            let indent = "    ".repeat(open.len());
            // prost puts a message's nested types in a module named after the message,
            // which may repeat the package's last name (`shapes::shapes`); fields
            // without a proto comment have no doc; prost's enum helpers (`as_str_name`)
            // have neither `#[must_use]` nor backticks around "ProtoBuf" in their docs.
            include.push_str(&format!(
                "{indent}#[allow(\n{indent}    clippy::module_inception,\n{indent}    \
                 missing_docs,\n{indent}    clippy::must_use_candidate,\n{indent}    \
                 clippy::doc_markdown,\n{indent}    reason = \"generated from the schema: \
                 names and docs follow the .proto file and prost\"\n{indent})]\n\
                 {indent}pub mod {part} {{\n"
            ));
            open.push(part.clone());
        }
        let indent = "    ".repeat(open.len());
        if dir_is_out_dir {
            include.push_str(&format!(
                "{indent}include!(concat!(env!(\"OUT_DIR\"), \"/{name}\"));\n"
            ));
        } else {
            let path = dir.join(&name);
            let path = path.canonicalize().unwrap_or(path);
            include.push_str(&format!(
                "{indent}include!({:?});\n",
                path.display().to_string()
            ));
        }
    }
    while !open.is_empty() {
        open.pop();
        include.push_str(&format!("{}}}\n", "    ".repeat(open.len())));
    }
    write(dir.join(include_file), &include)
}
