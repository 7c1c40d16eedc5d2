//! `gonet-cli gen ts`: TypeScript for the TypeScript client (`clients/ts`) from `.proto`
//! files, one `.ts` file per `.proto` file.
//!
//! Each file holds, in the shape of the canonical proto3 JSON mapping (`protojson`):
//!
//! - per message, an interface (lowerCamel field names; 64-bit integers and bytes as
//!   strings; enums as unions of their names; fields with presence, oneof members
//!   flattened among them, optional; repeated fields as arrays; maps as records) and a
//!   message type of the same name (its id, full name, and a `fill` that puts back the
//!   default values the mapping leaves out);
//! - per enum, a union of its value names;
//! - the id table (`ids`) and the message types with ids (`messages`);
//! - per service, a client class (`XClient`: one method per rpc, a one-way rpc sends)
//!   and the handlers of what the server sends (`XHandlers`, `onX`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use heck::ToLowerCamelCase;
use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
    ServiceDescriptor, Value,
};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::Failure;
use crate::args::GenTsArgs;
use crate::ids::Plan;

const OPTIONS_FILE: &str = "gonet/options.proto";
const OPTIONS_PROTO: &str = include_str!("../../schemas/gonet/options.proto");
const EMPTY: &str = "google.protobuf.Empty";

pub(crate) fn run(args: GenTsArgs) -> Result<(), Failure> {
    let plan = Plan::from_args(args.paths, args.includes)?;
    let (files, includes) = plan.absolute().map_err(Failure::Failed)?;
    // The build's checks first: duplicate or reserved ids, messages without ids in
    // services, syntax errors, each with its file and line.
    if let Err(err) = gonet_build::inspect(&files, &includes) {
        plan.report(&err);
        return Err(Failure::Reported);
    }
    let pool = compile(&files, &includes).map_err(Failure::Failed)?;
    let out = generate(&pool, &args.client).map_err(Failure::Failed)?;
    for (name, text) in &out {
        let path = args.out.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))
                .map_err(Failure::Failed)?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::Failed)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Serves `gonet/options.proto` from memory, as gonet-build does.
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

fn compile(files: &[PathBuf], includes: &[PathBuf]) -> anyhow::Result<DescriptorPool> {
    let mut resolver = ChainFileResolver::new();
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.clone()));
    }
    resolver.add(OptionsResolver);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    for file in files {
        compiler
            .open_file(file)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    Ok(compiler.descriptor_pool())
}

fn is_user_file(name: &str) -> bool {
    !name.starts_with("google/protobuf/") && name != OPTIONS_FILE
}

/// The TypeScript files for every user file of `pool`: (path, text), sorted by path.
pub(crate) fn generate(
    pool: &DescriptorPool,
    client: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let id_ext = pool.get_extension_by_name("gonet.id");
    let id_of = |msg: &MessageDescriptor| -> Option<u32> {
        let ext = id_ext.as_ref()?;
        let options = msg.options();
        if !options.has_extension(ext) {
            return None;
        }
        match options.get_extension(ext).as_ref() {
            Value::U32(id) => Some(*id),
            _ => None,
        }
    };
    let mut out = BTreeMap::new();
    for file in pool.files().filter(|f| is_user_file(f.name())) {
        let file_gen = FileGen {
            file: file.clone(),
            docs: Docs::new(&file),
            client,
            id_of: &id_of,
            imports: BTreeMap::new(),
            body: String::new(),
        };
        out.insert(ts_path(file.name()), file_gen.run());
    }
    Ok(out)
}

/// `game/lobby.proto` -> `game/lobby.ts`.
fn ts_path(proto: &str) -> String {
    let stem = proto.strip_suffix(".proto").unwrap_or(proto);
    format!("{stem}.ts")
}

/// The import path of `to` from the file `from` (`./lobby.js`, `../chat.js`).
fn relative_import(from: &str, to: &str) -> String {
    let from_dir: Vec<&str> = Path::new(from)
        .parent()
        .map(|p| p.iter().filter_map(|c| c.to_str()).collect())
        .unwrap_or_default();
    let to_path = ts_path(to);
    let to_parts: Vec<&str> = to_path.split('/').collect();
    let common = from_dir
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..from_dir.len() {
        parts.push("..".into());
    }
    for part in &to_parts[common..] {
        parts.push((*part).to_owned());
    }
    let joined = parts.join("/");
    let joined = joined.strip_suffix(".ts").unwrap_or(&joined).to_owned() + ".js";
    if joined.starts_with("..") {
        joined
    } else {
        format!("./{joined}")
    }
}

/// Leading comments by descriptor path.
struct Docs(HashMap<Vec<i32>, String>);

impl Docs {
    fn new(file: &FileDescriptor) -> Self {
        let mut map = HashMap::new();
        if let Some(info) = &file.file_descriptor_proto().source_code_info {
            for loc in &info.location {
                let doc = loc.leading_comments().trim();
                if !doc.is_empty() {
                    map.entry(loc.path.clone())
                        .or_insert_with(|| doc.to_owned());
                }
            }
        }
        Self(map)
    }

    /// A TSDoc comment at `indent`, or nothing.
    fn tsdoc(&self, path: &[i32], indent: &str, extra: Option<&str>) -> String {
        let mut lines: Vec<String> = self
            .0
            .get(path)
            .map(|d| d.lines().map(|l| l.trim().replace("*/", "*\\/")).collect())
            .unwrap_or_default();
        if let Some(extra) = extra {
            if !lines.is_empty() {
                lines.push(String::new());
            }
            lines.push(extra.to_owned());
        }
        match lines.len() {
            0 => String::new(),
            1 => format!("{indent}/** {} */\n", lines[0]),
            _ => {
                let mut s = format!("{indent}/**\n");
                for line in lines {
                    if line.is_empty() {
                        let _ = writeln!(s, "{indent} *");
                    } else {
                        let _ = writeln!(s, "{indent} * {line}");
                    }
                }
                let _ = writeln!(s, "{indent} */");
                s
            }
        }
    }
}

struct FileGen<'a> {
    file: FileDescriptor,
    docs: Docs,
    client: &'a str,
    id_of: &'a dyn Fn(&MessageDescriptor) -> Option<u32>,
    /// Names to import from other generated files, by file.
    imports: BTreeMap<String, BTreeSet<String>>,
    body: String,
}

/// The TypeScript name of a message or enum: its name inside its package, with `_`
/// for nesting (`Shapes.Point` -> `Shapes_Point`).
fn ts_name(full_name: &str, package: &str) -> String {
    let inner = if package.is_empty() {
        full_name
    } else {
        full_name
            .strip_prefix(package)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(full_name)
    };
    inner.replace('.', "_")
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

fn property(name: &str) -> String {
    if is_identifier(name) {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// The TypeScript of a well-known type in the proto3 JSON mapping.
fn well_known(full_name: &str) -> Option<&'static str> {
    Some(match full_name {
        "google.protobuf.Empty" => "Record<string, never>",
        "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask" => {
            "string"
        }
        "google.protobuf.Struct" => "{ [key: string]: unknown }",
        "google.protobuf.Value" => "unknown",
        "google.protobuf.ListValue" => "unknown[]",
        "google.protobuf.Any" => "{ \"@type\": string; [key: string]: unknown }",
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value" => "number",
        "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => "string",
        "google.protobuf.BoolValue" => "boolean",
        _ => return None,
    })
}

impl FileGen<'_> {
    fn run(mut self) -> String {
        let file = self.file.clone();
        for (i, msg) in file.messages().enumerate() {
            self.message(&msg, vec![4, i as i32]);
        }
        for (i, e) in file.enums().enumerate() {
            self.enumeration(&e, vec![5, i as i32]);
        }
        self.table();
        for (i, service) in file.services().enumerate() {
            self.service(&service, vec![6, i as i32]);
        }
        let mut head = format!(
            "// Generated by gonet-cli gen ts from {}. Do not edit.\n\n",
            file.name()
        );
        let _ = writeln!(
            head,
            "import {{ type CallOptions, type Client, type MessageType, messageType }} from {:?};",
            self.client
        );
        for (from, names) in &self.imports {
            let list: Vec<&str> = names.iter().map(String::as_str).collect();
            let _ = writeln!(
                head,
                "import {{ {} }} from {:?};",
                list.join(", "),
                relative_import(file.name(), from)
            );
        }
        head.push('\n');
        head + self.body.trim_end() + "\n"
    }

    /// The TypeScript name of a message or enum, imported when it lives in another file.
    fn reference(&mut self, full_name: &str, file: &FileDescriptor) -> String {
        let name = ts_name(full_name, file.package_name());
        if file.name() != self.file.name() {
            self.imports
                .entry(file.name().to_owned())
                .or_default()
                .insert(name.clone());
        }
        name
    }

    fn message_ref(&mut self, msg: &MessageDescriptor) -> String {
        if let Some(wkt) = well_known(msg.full_name()) {
            return wkt.to_owned();
        }
        self.reference(msg.full_name(), &msg.parent_file())
    }

    /// The type of one value of `kind` (not repeated).
    fn value_type(&mut self, kind: &Kind) -> String {
        match kind {
            Kind::Double
            | Kind::Float
            | Kind::Int32
            | Kind::Sint32
            | Kind::Sfixed32
            | Kind::Uint32
            | Kind::Fixed32 => "number".into(),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                "string".into()
            }
            Kind::Bool => "boolean".into(),
            Kind::String | Kind::Bytes => "string".into(),
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => "null".into(),
            Kind::Enum(e) => self.reference(e.full_name(), &e.parent_file()),
            Kind::Message(m) => self.message_ref(m),
        }
    }

    fn field_type(&mut self, field: &FieldDescriptor) -> String {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let value = self.value_type(&entry.map_entry_value_field().kind());
            format!("Record<string, {value}>")
        } else if field.is_list() {
            let value = self.value_type(&field.kind());
            if value.contains(' ') {
                format!("Array<{value}>")
            } else {
                format!("{value}[]")
            }
        } else {
            self.value_type(&field.kind())
        }
    }

    /// The default a field without presence takes when the JSON leaves it out.
    fn default_value(field: &FieldDescriptor) -> String {
        if field.is_map() {
            return "{}".into();
        }
        if field.is_list() {
            return "[]".into();
        }
        match field.kind() {
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                "\"0\"".into()
            }
            Kind::Bool => "false".into(),
            Kind::String | Kind::Bytes => "\"\"".into(),
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => "null".into(),
            Kind::Enum(e) => format!("{:?}", e.default_value().name()),
            Kind::Message(_) => "undefined".into(),
            _ => "0".into(),
        }
    }

    /// The generated message type that fills values of `kind`, if it has one.
    fn filler(&mut self, kind: &Kind) -> Option<String> {
        match kind {
            Kind::Message(m) if well_known(m.full_name()).is_none() => Some(self.message_ref(m)),
            _ => None,
        }
    }

    fn message(&mut self, msg: &MessageDescriptor, path: Vec<i32>) {
        if msg.is_map_entry() {
            return;
        }
        let name = ts_name(msg.full_name(), msg.package_name());
        let id = (self.id_of)(msg);
        let extra = match id {
            Some(id) => format!("`{}`, message id {id}.", msg.full_name()),
            None => format!("`{}` (no message id).", msg.full_name()),
        };
        let doc = self.docs.tsdoc(&path, "", Some(&extra));
        let mut fields = String::new();
        let mut fills = String::new();
        for (i, field) in msg.fields().enumerate() {
            let mut fpath = path.clone();
            fpath.extend([2, i as i32]);
            let ty = self.field_type(&field);
            let prop = property(field.json_name());
            let optional = field.supports_presence() && !field.is_list() && !field.is_map();
            let oneof = field
                .containing_oneof()
                .filter(|o| !o.is_synthetic())
                .map(|o| format!("Member of oneof `{}`.", o.name()));
            fields += &self.docs.tsdoc(&fpath, "  ", oneof.as_deref());
            let _ = writeln!(fields, "  {prop}{}: {ty};", if optional { "?" } else { "" });
            let access = if is_identifier(field.json_name()) {
                format!("m.{}", field.json_name())
            } else {
                format!("m[{:?}]", field.json_name())
            };
            if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    unreachable!("a map field's kind is its entry message")
                };
                let _ = writeln!(fills, "  {access} ??= {{}};");
                if let Some(fill) = self.filler(&entry.map_entry_value_field().kind()) {
                    let _ = writeln!(
                        fills,
                        "  for (const k of Object.keys({access})) {fill}.fill!({access}[k]);"
                    );
                }
            } else if field.is_list() {
                let _ = writeln!(fills, "  {access} ??= [];");
                if let Some(fill) = self.filler(&field.kind()) {
                    let _ = writeln!(fills, "  for (const v of {access}) {fill}.fill!(v);");
                }
            } else if optional {
                if let Some(fill) = self.filler(&field.kind()) {
                    let _ = writeln!(fills, "  if ({access} != null) {fill}.fill!({access});");
                }
            } else {
                let _ = writeln!(fills, "  {access} ??= {};", Self::default_value(&field));
            }
        }
        let _ = write!(self.body, "{doc}export interface {name} {{\n{fields}}}\n");
        let fill_fn = if fills.is_empty() {
            format!("(m: any): {name} => m")
        } else {
            format!("(m: any): {name} => {{\n{fills}  return m;\n}}")
        };
        let _ = write!(
            self.body,
            "export const {name}: MessageType<{name}> = messageType<{name}>({}, {:?}, {fill_fn});\n\n",
            id.unwrap_or(0),
            msg.full_name()
        );
        for (i, nested) in msg.child_messages().enumerate() {
            let mut npath = path.clone();
            npath.extend([3, i as i32]);
            self.message(&nested, npath);
        }
        for (i, e) in msg.child_enums().enumerate() {
            let mut epath = path.clone();
            epath.extend([4, i as i32]);
            self.enumeration(&e, epath);
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptor, path: Vec<i32>) {
        let name = ts_name(e.full_name(), e.package_name());
        let doc = self.docs.tsdoc(
            &path,
            "",
            Some(&format!("`{}`, by value name.", e.full_name())),
        );
        let values: Vec<String> = e.values().map(|v| format!("{:?}", v.name())).collect();
        let _ = write!(
            self.body,
            "{doc}export type {name} = {};\n\n",
            values.join(" | ")
        );
    }

    /// The id table and the message types with ids.
    fn table(&mut self) {
        let mut rows = Vec::new();
        let file = self.file.clone();
        let mut stack: Vec<MessageDescriptor> = file.messages().collect();
        stack.reverse();
        while let Some(msg) = stack.pop() {
            if let Some(id) = (self.id_of)(&msg) {
                rows.push((
                    id,
                    msg.full_name().to_owned(),
                    ts_name(msg.full_name(), msg.package_name()),
                ));
            }
            let mut nested: Vec<MessageDescriptor> = msg.child_messages().collect();
            nested.reverse();
            stack.extend(nested);
        }
        rows.sort();
        self.body += "/** The message ids of this file, by full name. */\nexport const ids = {\n";
        for (id, full, _) in &rows {
            let _ = writeln!(self.body, "  {full:?}: {id},");
        }
        self.body += "} as const;\n\n";
        self.body += "/** The message types of this file that have ids (`types` of `Client.connect`). */\nexport const messages: readonly MessageType<any>[] = [";
        let names: Vec<&str> = rows.iter().map(|(_, _, n)| n.as_str()).collect();
        self.body += &names.join(", ");
        self.body += "];\n\n";
    }

    fn service(&mut self, service: &ServiceDescriptor, path: Vec<i32>) {
        let name = service.name().to_owned();
        let doc = self.docs.tsdoc(
            &path,
            "",
            Some(&format!(
                "Calls `{}` on the server: one method per rpc.",
                service.full_name()
            )),
        );
        let mut client = format!(
            "{doc}export class {name}Client {{\n  constructor(readonly client: Client) {{}}\n"
        );
        let mut handlers = String::new();
        let mut register = String::new();
        for (i, method) in service.methods().enumerate() {
            let mut mpath = path.clone();
            mpath.extend([2, i as i32]);
            let fname = method.name().to_lower_camel_case();
            let input = self.message_ref(&method.input());
            let one_way = method.output().full_name() == EMPTY;
            let mdoc = self.docs.tsdoc(
                &mpath,
                "  ",
                Some(if one_way {
                    "One-way: sent as a plain message, nothing comes back."
                } else {
                    "Rejects with a `StatusError` when the server answers with one."
                }),
            );
            if one_way {
                let _ = write!(
                    client,
                    "\n{mdoc}  async {fname}(req: {input}): Promise<void> {{\n    this.client.send({input}, req);\n  }}\n"
                );
                let _ = writeln!(handlers, "  {fname}?(msg: {input}): void;");
                let _ = writeln!(
                    register,
                    "  if (handlers.{fname}) offs.push(client.on({input}, (m) => handlers.{fname}!(m)));"
                );
            } else {
                let output = self.message_ref(&method.output());
                let _ = write!(
                    client,
                    "\n{mdoc}  {fname}(req: {input}, options?: CallOptions): Promise<{output}> {{\n    return this.client.call({input}, req, {output}, options);\n  }}\n"
                );
                let _ = writeln!(
                    handlers,
                    "  {fname}?(req: {input}): {output} | Promise<{output}>;"
                );
                let _ = writeln!(
                    register,
                    "  if (handlers.{fname}) offs.push(client.handle({input}, {output}, (m) => handlers.{fname}!(m)));"
                );
            }
        }
        client += "}\n\n";
        self.body += &client;
        let _ = write!(
            self.body,
            "/**\n * What the server sends of `{full}`: a one-way rpc arrives as a push, any other as\n * a call the handler answers (a thrown `StatusError` goes back as the error).\n */\nexport interface {name}Handlers {{\n{handlers}}}\n\n",
            full = service.full_name()
        );
        let _ = write!(
            self.body,
            "/** Handles what the server sends of `{full}`; returns a function that stops it. */\nexport function on{name}(client: Client, handlers: {name}Handlers): () => void {{\n  const offs: (() => void)[] = [];\n{register}  return () => offs.forEach((off) => off());\n}}\n\n",
            full = service.full_name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_relative_to_the_importing_file() {
        assert_eq!(relative_import("a.proto", "b.proto"), "./b.js");
        assert_eq!(
            relative_import("game/lobby.proto", "chat.proto"),
            "../chat.js"
        );
        assert_eq!(
            relative_import("game/lobby.proto", "game/room/x.proto"),
            "./room/x.js"
        );
    }

    #[test]
    fn nested_names_are_joined_with_underscores() {
        assert_eq!(ts_name("webtest.Shapes.Point", "webtest"), "Shapes_Point");
        assert_eq!(ts_name("Top", ""), "Top");
        assert_eq!(property("snakeCase"), "snakeCase");
        assert_eq!(property("@type"), "\"@type\"");
    }
}
