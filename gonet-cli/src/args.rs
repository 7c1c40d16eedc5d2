//! The raw command line, as clap parses it, with every help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Creates gonet projects, checks the message ids of .proto schemas and generates TypeScript from them";

const AFTER_HELP: &str = "\
Examples:
  gonet-cli new mygame                      a TCP server and client with protobuf bodies
  gonet-cli new lobby --transport ws --codec json
  gonet-cli new secure --transport wss      WebSocket over TLS, with a development certificate
  gonet-cli ids schemas                     the id table of every .proto under schemas/
  gonet-cli ids schemas --format json       the same as JSON
  gonet-cli gen ts schemas --out web/gen    TypeScript for the TypeScript client

Exit status: 0 on success, 1 when a command fails (a schema problem, a file that cannot
be written), 2 when the command line is wrong (an unknown option, an invalid name, a
directory that is not empty).";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "gonet-cli", version, about = ABOUT, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Creates a project: a schema, a server, a client, a test
    #[command(after_help = NEW_AFTER_HELP)]
    New(NewArgs),
    /// Prints the message id table of .proto files, checked as the build checks it
    #[command(after_help = IDS_AFTER_HELP)]
    Ids(IdsArgs),
    /// Generates code for other languages from .proto files
    #[command(subcommand)]
    Gen(GenCommand),
}

/// What `gen` generates.
#[derive(Debug, Subcommand)]
pub(crate) enum GenCommand {
    /// TypeScript for the TypeScript client (clients/ts): message types in the proto3
    /// JSON shape, the id table, service clients and push handlers
    #[command(after_help = GEN_TS_AFTER_HELP)]
    Ts(GenTsArgs),
}

const GEN_TS_AFTER_HELP: &str = "\
One .ts file per .proto file (imports included), at the same relative path under --out:
schemas/chat.proto gives OUT/chat.ts. The schemas are checked as the build checks them
first. Each file imports the client from --client (gonet-client by default).

Per message: an interface in the shape of the canonical proto3 JSON mapping (lowerCamel
names, 64-bit integers and bytes as strings, enums as their names, optional and oneof
fields with ?, repeated as arrays, maps as records) and a message type of the same name
(id, full name, defaults). Per service S: SClient (a method per rpc), SHandlers and
onS(client, handlers) for what the server sends. And ids (the id table) and messages.

Examples:
  gonet-cli gen ts schemas --out web/src/gen
  gonet-cli gen ts proto/game.proto -I proto --out src/gen --client ../client/index.js";

/// The arguments of `gen ts`.
#[derive(Debug, Args)]
pub(crate) struct GenTsArgs {
    /// .proto files, or directories to search for them (default: schemas/ if it exists,
    /// else the current directory)
    #[arg(value_name = "FILES or DIRS")]
    pub(crate) paths: Vec<PathBuf>,

    /// A directory imports are resolved against (repeatable); replaces the default
    /// include path
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    pub(crate) includes: Vec<PathBuf>,

    /// The directory to write the .ts files into
    #[arg(long, short, value_name = "DIR")]
    pub(crate) out: PathBuf,

    /// Where the generated files import the client from
    #[arg(long, value_name = "MODULE", default_value = "gonet-client")]
    pub(crate) client: String,
}

const NEW_AFTER_HELP: &str = "\
The project has Cargo.toml (gonet with only the chosen transport and codec), build.rs
(gonet_build::compile), schemas/NAME.proto (messages with ids, a Greeter service and an
Events service the server pushes through), src/lib.rs (the generated code, the URL and
the codec), src/bin/server.rs, src/bin/client.rs, tests/round_trip.rs and a README.

Where the gonet crates come from: until they are published, path dependencies on the
gonet workspace this gonet-cli was built from, or on --gonet-path DIR; with
--gonet-version VERSION, version requirements on the published crates instead.

Examples:
  gonet-cli new mygame
  gonet-cli new mygame --transport kcp --codec binary
  gonet-cli new chat-server --transport ws --codec json --path services/chat
  gonet-cli new mygame --gonet-path ~/src/gonet-rs
  gonet-cli new mygame --gonet-version 0.1";

const IDS_AFTER_HELP: &str = "\
Directories are searched recursively for .proto files (hidden directories and target/
are skipped). Imports resolve against the -I directories, or, without any, against the
directories given and the directories of the files given; gonet/options.proto and the
google/protobuf files resolve on their own.

After a header line, each line of the table is: id, full message name, file:line,
sorted by id. Messages without an id are not listed. Duplicate ids, reserved ids (0 and 0xFFFFFF00 and up) and the other build
checks are reported as file:line: error: ..., with exit status 1.

Examples:
  gonet-cli ids                     the schemas/ directory, or the current one
  gonet-cli ids schemas
  gonet-cli ids proto/chat.proto proto/game.proto
  gonet-cli ids proto/game -I proto
  gonet-cli ids schemas --format json   a JSON array: id, name and location of each message";

/// The arguments of `new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The project's name: the crate name, and the schema's name and package
    /// (a lower-case letter, then lower-case letters, digits, `_` or `-`)
    pub(crate) name: String,

    /// How server and client connect
    #[arg(long, short, value_enum, default_value_t = TransportArg::Tcp)]
    pub(crate) transport: TransportArg,

    /// How message bodies are encoded
    #[arg(long, short, value_enum, default_value_t = CodecArg::Protobuf)]
    pub(crate) codec: CodecArg,

    /// The directory to write the project into (default: ./NAME); it must not exist
    /// or be empty
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,

    /// Path dependencies on the gonet workspace at DIR (the directory holding gonet/
    /// and gonet-build/) instead of the one this gonet-cli was built from
    #[arg(long, value_name = "DIR", conflicts_with = "gonet_version")]
    pub(crate) gonet_path: Option<PathBuf>,

    /// Version requirements on the published gonet crates (such as 0.1) instead of
    /// path dependencies
    #[arg(long, value_name = "VERSION")]
    pub(crate) gonet_version: Option<String>,
}

/// The transports a project can be created with; each is a `gonet` feature and a URL
/// scheme of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportArg {
    /// TCP streams
    Tcp,
    /// UDP datagrams (lossy)
    Udp,
    /// WebSocket
    Ws,
    /// WebSocket over TLS, with a development certificate the client trusts
    Wss,
    /// QUIC (TLS), with a development certificate the client trusts
    Quic,
    /// KCP over UDP
    Kcp,
}

/// The codecs a project can be created with; each is a `gonet` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CodecArg {
    /// Protocol Buffers
    Protobuf,
    /// JSON as Go gonet writes it: .proto field names, base64 bytes, numbers
    Json,
    /// The canonical proto3 JSON mapping, as protobuf's JavaScript and Python libraries
    /// write it
    Protojson,
    /// XML
    Xml,
    /// MessagePack
    Binary,
}

/// The arguments of `ids`.
#[derive(Debug, Args)]
pub(crate) struct IdsArgs {
    /// .proto files, or directories to search for them (default: schemas/ if it exists,
    /// else the current directory)
    #[arg(value_name = "FILES or DIRS")]
    pub(crate) paths: Vec<PathBuf>,

    /// A directory imports are resolved against (repeatable); replaces the default
    /// include path
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    pub(crate) includes: Vec<PathBuf>,

    /// How to print the table: aligned columns, or a JSON array of
    /// {"id", "name", "location"} objects
    #[arg(long, value_enum, default_value_t = IdsFormat::Table)]
    pub(crate) format: IdsFormat,
}

/// The formats of `ids`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum IdsFormat {
    /// Aligned columns with a header
    Table,
    /// A JSON array sorted by id
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
