//! The protobuf front end: parses `.proto` files with protox (no `protoc`), reads the
//! `(gonet.id)` options through prost-reflect and fills the [`Schema`] model.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use miette::{Diagnostic, SourceSpan};
use prost_reflect::{DescriptorPool, Value};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet, SourceCodeInfo};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::error::{Problem, ProblemKind};
use crate::model::{Location, MessageDef, MethodDef, Schema, ServiceDef};

/// The file that defines `(gonet.id)`, as users import it.
pub(crate) const OPTIONS_FILE: &str = "gonet/options.proto";
/// Its text, served from memory so users never copy it.
pub(crate) const OPTIONS_PROTO: &str = include_str!("../../schemas/gonet/options.proto");
const ID_OPTION: &str = "gonet.id";

/// How serde must treat a field so every codec round-trips it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldShape {
    /// An `Option`: absent values are left out of self-describing formats.
    Optional,
    /// A `Vec`: empty ones are left out of self-describing formats.
    Collection,
    /// A map: like a `Vec`, and written as a list of entries in XML.
    Map,
    /// A oneof: an `Option` of an enum tagged explicitly (`case`, `value`).
    Oneof,
}

/// How a field is named and written in the serde codecs (JSON, XML, binary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldNames {
    /// The name as written in the `.proto` file: what the serde codecs write.
    pub(crate) proto: String,
    /// The lowerCamel `json_name`: also accepted on input when it differs.
    pub(crate) json: String,
    /// How the value is held, when serde needs help with it.
    pub(crate) value: FieldValue,
    /// A member of a oneof: a variant of the oneof's enum, named by its case, not a
    /// struct field.
    pub(crate) oneof_member: bool,
    /// How many modules deep the Rust item holding the field sits below the package's
    /// module (a nested message's struct one, a oneof's enum one more).
    pub(crate) depth: usize,
    /// The number of parts of the package's module path.
    pub(crate) package_depth: usize,
}

/// The Rust form of a field's value, where the serde codecs treat it specially.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldValue {
    /// A plain singular scalar, string, bytes or enum: left out when zero, as Go does.
    Zeroable {
        /// `bytes`: base64 text in JSON and XML.
        bytes: bool,
    },
    /// `optional bytes`, a `google.protobuf.BytesValue` or a oneof's bytes member.
    OptionalBytes,
    /// `repeated bytes`.
    RepeatedBytes,
    /// A map whose values are `bytes`.
    MapBytes,
    /// A `google.protobuf.Empty` held as `Option<()>`: `{}` when present.
    Empty,
    /// A well-known message type, held as its `prost_types` struct: the serde codecs
    /// write it through its serde-capable copy (named here, `Timestamp`) in `gonet_wkt`.
    Wkt {
        /// The type's name in `google.protobuf`.
        name: String,
        /// How the field holds it.
        holder: WktHolder,
    },
    /// Anything else.
    Other,
}

/// How a field holds a well-known message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WktHolder {
    /// `Option<T>`.
    Option,
    /// `Vec<T>`.
    List,
    /// A map's values.
    Map,
    /// A oneof member's variant: `T`.
    One,
}

/// The well-known types prost-build maps to Rust primitives (wrappers) or `()` rather
/// than to `prost_types` structs.
const WRAPPERS: &[&str] = &[
    "BoolValue",
    "BytesValue",
    "DoubleValue",
    "FloatValue",
    "Int32Value",
    "Int64Value",
    "StringValue",
    "UInt32Value",
    "UInt64Value",
];

/// What the front end hands to the generator.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) schema: Schema,
    /// The files to generate Rust for: the user's files, what they import, and the
    /// well-known types they use.
    pub(crate) files: FileDescriptorSet,
    /// Field paths (`.pkg.Msg.field`) that need a serde attribute.
    pub(crate) fields: Vec<(String, FieldShape)>,
    /// Oneof paths (`.pkg.Msg.kind`).
    pub(crate) oneofs: Vec<String>,
    /// Every field's names and value form, by path (`.pkg.Msg.field`).
    pub(crate) names: Vec<(String, FieldNames)>,
    /// Every file read from disk, for `cargo:rerun-if-changed`.
    pub(crate) sources: Vec<PathBuf>,
    /// Every file of the run with what it imports, without source information: what
    /// the `protojson` codec reads the schema from.
    pub(crate) all_files: FileDescriptorSet,
}

impl Parsed {
    /// [`all_files`](Self::all_files), encoded.
    pub(crate) fn descriptor_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.all_files)
    }
}

/// Serves `gonet/options.proto` from memory.
struct OptionsResolver;

impl FileResolver for OptionsResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == OPTIONS_FILE {
            File::from_source(name, OPTIONS_PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Parses `protos` against `includes`. Problems in one file do not stop the others, so
/// one run reports them all.
pub(crate) fn parse(
    protos: &[PathBuf],
    includes: &[PathBuf],
) -> Result<Parsed, (Vec<Problem>, Vec<PathBuf>)> {
    let mut resolver = ChainFileResolver::new();
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.clone()));
    }
    resolver.add(OptionsResolver);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);

    let include_list = includes
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut problems = Vec::new();
    for proto in protos {
        if let Err(err) = compiler.open_file(proto) {
            problems.push(protox_problem(&err, proto, &include_list));
        }
    }

    let sources: Vec<PathBuf> = protos
        .iter()
        .cloned()
        .chain(
            compiler
                .files()
                .filter_map(|f| f.path().map(Path::to_path_buf)),
        )
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let pool = compiler.descriptor_pool();
    let fds = compiler.file_descriptor_set();
    let mut all_files = fds.clone();
    for file in &mut all_files.file {
        file.source_code_info = None;
    }
    let (schema, files, fields, oneofs, names) = model_from(&pool, fds);
    if problems.is_empty() {
        Ok(Parsed {
            schema,
            files,
            fields,
            oneofs,
            names,
            sources,
            all_files,
        })
    } else {
        // The files that did compile are still checked, so one run reports everything.
        problems.extend(crate::validate::check(&schema));
        Err((problems, sources))
    }
}

fn is_user_file(name: &str) -> bool {
    !is_wkt_file(name) && name != OPTIONS_FILE
}

/// A file of the well-known types.
pub(crate) fn is_wkt_file(name: &str) -> bool {
    name.starts_with("google/protobuf/")
}

type Model = (
    Schema,
    FileDescriptorSet,
    Vec<(String, FieldShape)>,
    Vec<String>,
    Vec<(String, FieldNames)>,
);

fn model_from(pool: &DescriptorPool, fds: FileDescriptorSet) -> Model {
    let id_ext = pool.get_extension_by_name(ID_OPTION);
    // The well-known types the user's files import are generated too, so they carry the
    // same serde glue as everything else.
    let mut wanted: BTreeSet<String> = fds
        .file
        .iter()
        .filter(|f| is_user_file(f.name()))
        .map(|f| f.name().to_owned())
        .collect();
    // Files come in import order; walking them backwards visits every importer before
    // what it imports, so well-known types imported by well-known types are found too.
    for file in fds.file.iter().rev() {
        if wanted.contains(file.name()) {
            for dep in &file.dependency {
                if dep.starts_with("google/protobuf/") && dep != "google/protobuf/descriptor.proto"
                {
                    wanted.insert(dep.clone());
                }
            }
        }
    }
    let mut schema = Schema::default();
    let mut fields = Vec::new();
    let mut oneofs = Vec::new();
    let mut names = Vec::new();
    let mut files = Vec::new();
    for file in fds.file {
        if !wanted.contains(file.name()) {
            continue;
        }
        let lines = Lines::new(file.source_code_info.as_ref());
        let package = file.package().to_owned();
        for (i, msg) in file.message_type.iter().enumerate() {
            walk_message(
                &Walk {
                    pool,
                    id_ext: id_ext.as_ref(),
                    file: &file,
                    lines: &lines,
                },
                msg,
                "",
                vec![4, i as i32],
                &mut schema,
                &mut Collect {
                    fields: &mut fields,
                    oneofs: &mut oneofs,
                    names: &mut names,
                },
            );
        }
        for (s, svc) in file.service.iter().enumerate() {
            let path = vec![6, s as i32];
            let methods = svc
                .method
                .iter()
                .enumerate()
                .map(|(m, method)| {
                    let mpath = vec![6, s as i32, 2, m as i32];
                    MethodDef {
                        name: method.name().to_owned(),
                        input: method.input_type().trim_start_matches('.').to_owned(),
                        output: method.output_type().trim_start_matches('.').to_owned(),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                        doc: lines.doc(&mpath),
                        location: Location::new(file.name(), lines.line(&mpath)),
                    }
                })
                .collect();
            schema.services.push(ServiceDef {
                package: package.clone(),
                name: svc.name().to_owned(),
                methods,
                doc: lines.doc(&path),
                location: Location::new(file.name(), lines.line(&path)),
            });
        }
        files.push(file);
    }
    (
        schema,
        FileDescriptorSet { file: files },
        fields,
        oneofs,
        names,
    )
}

/// What the walk over messages collects.
struct Collect<'a> {
    fields: &'a mut Vec<(String, FieldShape)>,
    oneofs: &'a mut Vec<String>,
    names: &'a mut Vec<(String, FieldNames)>,
}

struct Walk<'a> {
    pool: &'a DescriptorPool,
    id_ext: Option<&'a prost_reflect::ExtensionDescriptor>,
    file: &'a FileDescriptorProto,
    lines: &'a Lines,
}

fn walk_message(
    walk: &Walk<'_>,
    msg: &DescriptorProto,
    parent: &str,
    path: Vec<i32>,
    schema: &mut Schema,
    out: &mut Collect<'_>,
) {
    if msg.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    let name = if parent.is_empty() {
        msg.name().to_owned()
    } else {
        format!("{parent}.{}", msg.name())
    };
    let package = walk.file.package();
    let full = if package.is_empty() {
        name.clone()
    } else {
        format!("{package}.{name}")
    };
    let id = walk.id_ext.and_then(|ext| {
        let desc = walk.pool.get_message_by_name(&full)?;
        let options = desc.options();
        if !options.has_extension(ext) {
            return None;
        }
        match options.get_extension(ext).as_ref() {
            Value::U32(id) => Some(*id),
            _ => None,
        }
    });
    schema.messages.push(MessageDef {
        package: package.to_owned(),
        name: name.clone(),
        id,
        location: Location::new(walk.file.name(), walk.lines.line(&path)),
    });

    let mut seen_oneofs = BTreeSet::new();
    for field in &msg.field {
        let field_path = format!(".{full}.{}", field.name());
        let is_map = field.label() == Label::Repeated
            && field.r#type() == Type::Message
            && msg.nested_type.iter().any(|n| {
                n.options.as_ref().is_some_and(|o| o.map_entry())
                    && field.type_name() == format!(".{full}.{}", n.name())
            });
        let shape = if is_map {
            Some(FieldShape::Map)
        } else if field.label() == Label::Repeated {
            Some(FieldShape::Collection)
        } else if field.proto3_optional() {
            Some(FieldShape::Optional)
        } else if let Some(oneof) = field.oneof_index {
            if let Some(decl) = msg.oneof_decl.get(oneof as usize)
                && seen_oneofs.insert(oneof)
            {
                let oneof_path = format!(".{full}.{}", decl.name());
                out.oneofs.push(oneof_path.clone());
                out.fields.push((oneof_path, FieldShape::Oneof));
            }
            None
        } else if field.r#type() == Type::Message
            || field.r#type() == Type::Group
            || (field.label() == Label::Optional && walk.file.syntax() == "proto2")
        {
            Some(FieldShape::Optional)
        } else {
            None
        };
        let bytes = field.r#type() == Type::Bytes;
        let oneof_member = field.oneof_index.is_some() && !field.proto3_optional();
        // The type a field (or a map field's value) holds, when it is well-known.
        let value_type = if is_map {
            msg.nested_type
                .iter()
                .find(|n| field.type_name() == format!(".{full}.{}", n.name()))
                .and_then(|entry| entry.field.iter().find(|f| f.number() == 2))
                .map(|v| v.type_name().to_owned())
                .unwrap_or_default()
        } else {
            field.type_name().to_owned()
        };
        let wkt = value_type.strip_prefix(".google.protobuf.").filter(|name| {
            !is_wkt_file(walk.file.name()) && !name.contains('.') && {
                let kind = if is_map {
                    Type::Message
                } else {
                    field.r#type()
                };
                kind == Type::Message
            }
        });
        let map_of_bytes = is_map
            && msg
                .nested_type
                .iter()
                .find(|n| field.type_name() == format!(".{full}.{}", n.name()))
                .and_then(|entry| entry.field.iter().find(|f| f.number() == 2))
                .is_some_and(|v| v.r#type() == Type::Bytes);
        let value = match (wkt, shape) {
            (Some("BytesValue"), Some(FieldShape::Collection)) => FieldValue::RepeatedBytes,
            (Some("BytesValue"), Some(FieldShape::Optional)) => FieldValue::OptionalBytes,
            (Some("BytesValue"), None) if oneof_member => FieldValue::Zeroable { bytes: true },
            (Some("Empty"), Some(FieldShape::Optional)) => FieldValue::Empty,
            (Some(name), _) if WRAPPERS.contains(&name) || name == "Empty" => FieldValue::Other,
            (Some(name), shape) => FieldValue::Wkt {
                name: name.to_owned(),
                holder: match shape {
                    Some(FieldShape::Collection) => WktHolder::List,
                    Some(FieldShape::Map) => WktHolder::Map,
                    None if oneof_member => WktHolder::One,
                    _ => WktHolder::Option,
                },
            },
            (None, Some(FieldShape::Collection)) if bytes => FieldValue::RepeatedBytes,
            (None, Some(FieldShape::Map)) if map_of_bytes => FieldValue::MapBytes,
            (None, Some(FieldShape::Optional)) if bytes => FieldValue::OptionalBytes,
            // A oneof member's variant holds the value itself.
            (None, None) if field.r#type() != Type::Message => FieldValue::Zeroable { bytes },
            _ => FieldValue::Other,
        };
        // prost-build finds a oneof member below its oneof.
        let names_path = match field
            .oneof_index
            .and_then(|i| msg.oneof_decl.get(i as usize))
        {
            Some(decl) if !field.proto3_optional() => {
                format!(".{full}.{}.{}", decl.name(), field.name())
            }
            _ => field_path.clone(),
        };
        out.names.push((
            names_path,
            FieldNames {
                proto: field.name().to_owned(),
                json: field
                    .json_name
                    .clone()
                    .unwrap_or_else(|| json_name(field.name())),
                value,
                oneof_member,
                depth: name.matches('.').count() + usize::from(oneof_member),
                package_depth: package.split('.').filter(|p| !p.is_empty()).count(),
            },
        ));
        if let Some(shape) = shape {
            out.fields.push((field_path, shape));
        }
    }
    for (j, nested) in msg.nested_type.iter().enumerate() {
        let mut npath = path.clone();
        npath.extend([3, j as i32]);
        walk_message(walk, nested, &name, npath, schema, out);
    }
}

/// The lowerCamel JSON name protoc gives a field: underscores dropped, the letter after
/// each one upper-cased.
fn json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Source lines and comments by descriptor path.
struct Lines(HashMap<Vec<i32>, (u32, String)>);

impl Lines {
    fn new(info: Option<&SourceCodeInfo>) -> Self {
        let mut map = HashMap::new();
        for loc in info.map(|i| i.location.as_slice()).unwrap_or_default() {
            let line = loc.span.first().map_or(0, |l| *l as u32 + 1);
            map.entry(loc.path.clone())
                .or_insert((line, loc.leading_comments().to_owned()));
        }
        Self(map)
    }

    fn line(&self, path: &[i32]) -> u32 {
        self.0.get(path).map_or(0, |(line, _)| *line)
    }

    fn doc(&self, path: &[i32]) -> String {
        self.0
            .get(path)
            .map(|(_, doc)| doc.clone())
            .unwrap_or_default()
    }
}

/// Turns a protox error into a problem with file, line and a snippet.
fn protox_problem(err: &protox::Error, proto: &Path, include_list: &str) -> Problem {
    let file = err
        .file()
        .map(str::to_owned)
        .unwrap_or_else(|| proto.display().to_string());
    let mut location = Location::new(file, 0);
    let mut snippet = None;
    let span: Option<SourceSpan> = err
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| *l.inner());
    if let (Some(span), Some(source)) = (span, err.source_code()) {
        if let Ok(at) = source.read_span(&span, 0, 0) {
            location.line = at.line() as u32 + 1;
            let column = at.column();
            if let Ok(around) = source.read_span(&span, 1, 1) {
                snippet = Some(render_snippet(
                    &String::from_utf8_lossy(around.data()),
                    around.line(),
                    at.line(),
                    column,
                ));
            }
        }
    }
    let message = err.to_string();
    let kind = if err.is_file_not_found() {
        ProblemKind::MissingImport(message, include_list.to_owned())
    } else {
        ProblemKind::Proto(message)
    };
    Problem {
        location: Some(location),
        kind,
        snippet,
    }
}

/// Numbers the lines of `text` (which starts at 0-based line `first`) and marks
/// `column` of line `at`.
fn render_snippet(text: &str, first: usize, at: usize, column: usize) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let n = first + i;
        out.push_str(&format!("{:>4} | {line}\n", n + 1));
        if n == at {
            out.push_str(&format!("     | {}^\n", " ".repeat(column)));
        }
    }
    out.truncate(out.trim_end().len());
    out
}
