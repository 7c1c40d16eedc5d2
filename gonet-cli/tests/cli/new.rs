//! `gonet-cli new`: every transport and codec, the options, the errors, and one
//! project built and run as a user would.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{Dir, target_dir, workspace};

const TRANSPORTS: &[&str] = &["tcp", "udp", "ws", "wss", "quic", "kcp"];
/// The transports over TLS: the server saves its development certificate, the client
/// trusts it.
const TLS: &[&str] = &["wss", "quic"];
const CODECS: &[(&str, &str)] = &[
    ("protobuf", "Protobuf"),
    ("json", "Json"),
    ("xml", "Xml"),
    ("binary", "Binary"),
];
const FILES: &[&str] = &[
    "Cargo.toml",
    "build.rs",
    "src/lib.rs",
    "src/bin/server.rs",
    "src/bin/client.rs",
    "tests/round_trip.rs",
    "README.md",
    ".gitignore",
];

fn next_steps(name: &str, transport: &str, codec: &str, dir: &str) -> String {
    format!(
        "Created {name} ({transport} transport, {codec} codec) in {dir}\n\n\
         Next:\n    cd {dir}\n    \
         cargo run --bin server    # in one terminal\n    \
         cargo run --bin client    # in another\n    \
         cargo test\n"
    )
}

#[test]
fn every_transport_and_codec_gives_its_features_url_and_codec() {
    let dir = Dir::new();
    let gonet = workspace().join("gonet").display().to_string();
    let gonet_build = workspace().join("gonet-build").display().to_string();
    for transport in TRANSPORTS {
        for (codec, variant) in CODECS {
            let name = format!("p-{transport}-{codec}");
            let package = name.replace('-', "_");
            let out = dir
                .cli(&["new", &name, "--transport", transport, "--codec", codec])
                .stdout();
            assert_eq!(out, next_steps(&name, transport, codec, &name));
            let file = |rel: &str| dir.read(&format!("{name}/{rel}"));
            for rel in FILES
                .iter()
                .copied()
                .chain([format!("schemas/{name}.proto").as_str()])
            {
                assert!(!file(rel).contains("{{"), "{name}/{rel}: {}", file(rel));
            }

            let features = if *codec == "protobuf" {
                format!("\"{transport}\", \"protobuf\", \"signal\"")
            } else {
                format!("\"{transport}\", \"protobuf\", \"{codec}\", \"signal\"")
            };
            let cargo = file("Cargo.toml");
            assert!(cargo.contains(&format!("name = \"{name}\"\n")), "{cargo}");
            assert!(
                cargo.contains(&format!(
                    "gonet = {{ path = \"{gonet}\", default-features = false, features = [{features}] }}\n"
                )),
                "{cargo}"
            );
            assert!(
                cargo.contains(&format!("gonet-build = {{ path = \"{gonet_build}\" }}\n")),
                "{cargo}"
            );
            assert!(cargo.ends_with("\n[workspace]\n"), "{cargo}");

            let tls = TLS.contains(transport);
            let path = if transport.starts_with("ws") {
                "/ws"
            } else {
                ""
            };
            let lib = file("src/lib.rs");
            assert!(
                lib.contains(&format!(
                    "pub const DEFAULT_URL: &str = \"{transport}://127.0.0.1:7000{path}\";"
                )),
                "{lib}"
            );
            assert!(
                lib.contains(&format!(
                    "pub const CODEC: gonet::Codec = gonet::Codec::{variant};"
                )),
                "{lib}"
            );
            assert!(
                lib.contains(&format!("pub use self::{package}::*;")),
                "{lib}"
            );
            assert!(file("tests/round_trip.rs").contains(&format!(
                "server::serve(\"{transport}://127.0.0.1:0{path}\")"
            )));
            let client = file("src/bin/client.rs");
            let server = file("src/bin/server.rs");
            let test = file("tests/round_trip.rs");
            let uses = if tls {
                format!("use {package}::{{CODEC, DEFAULT_URL, DEV_CERT}};")
            } else {
                format!("use {package}::{{CODEC, DEFAULT_URL}};")
            };
            assert!(client.contains(&uses), "{client}");
            assert!(server.contains(&uses), "{server}");
            assert!(!client.contains("danger"), "{client}");
            assert_eq!(
                client.contains("let cert = std::fs::read(DEV_CERT)"),
                tls,
                "{client}"
            );
            assert_eq!(
                client.contains("Builder::new().client_tls(gonet::ClientTls::trust_der(&cert)?)"),
                tls,
                "{client}"
            );
            assert_eq!(
                server.contains("std::fs::write(DEV_CERT, cert)"),
                tls,
                "{server}"
            );
            assert_eq!(
                test.contains(".client_tls(gonet::ClientTls::trust_der(cert)"),
                tls,
                "{test}"
            );
            assert_eq!(
                lib.contains(
                    "pub const DEV_CERT: &str = concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/dev-cert.der\");"
                ),
                tls,
                "{lib}"
            );
            assert_eq!(
                file(".gitignore"),
                if tls {
                    "/target\n/dev-cert.der\n"
                } else {
                    "/target\n"
                }
            );
            assert!(
                server.contains(".with_env_filter(EnvFilter::try_from_default_env()"),
                "{server}"
            );
            assert!(cargo.contains("tracing-subscriber = "), "{cargo}");
            assert!(file("build.rs").contains(&format!(
                "const SCHEMAS: &[&str] = &[\"schemas/{name}.proto\"];"
            )));
            let readme = file("README.md");
            assert!(
                readme.contains(&format!(
                    "over {transport} (`{transport}://127.0.0.1:7000{path}`)\nwith {codec} bodies"
                )),
                "{readme}"
            );
            assert!(readme.contains(&format!("workspace at `{}`", workspace().display())));
            assert_eq!(
                readme.contains("saves it to\n`dev-cert.der` in this directory"),
                tls,
                "{readme}"
            );
            assert!(readme.contains("`RUST_LOG`"), "{readme}");

            let proto = file(&format!("schemas/{name}.proto"));
            assert!(
                proto.contains(&format!("\npackage {package};\n")),
                "{proto}"
            );
            let width = package.len() + ".Welcome".len();
            assert_eq!(
                dir.cli(&["ids", &format!("{name}/schemas")]).stdout(),
                format!(
                    "  id  {:<width$}  location\n\
                     1001  {:<width$}  {name}/schemas/{name}.proto:11\n\
                     1002  {:<width$}  {name}/schemas/{name}.proto:17\n\
                     2001  {:<width$}  {name}/schemas/{name}.proto:25\n",
                    "message",
                    format!("{package}.Hello"),
                    format!("{package}.Welcome"),
                    format!("{package}.News"),
                )
            );
        }
    }
}

#[test]
fn path_and_version_options() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
    let out = dir.cli(&["new", "game", "--path", "empty"]).stdout();
    assert_eq!(out, next_steps("game", "tcp", "protobuf", "empty"));
    assert!(
        dir.read("empty/schemas/game.proto")
            .contains("package game;")
    );

    let out = dir
        .cli(&[
            "new",
            "game",
            "--path",
            "deep/er/game dir",
            "--codec",
            "json",
        ])
        .stdout();
    assert_eq!(
        out,
        next_steps("game", "tcp", "json", "'deep/er/game dir'")
            .replace("in 'deep/er/game dir'", "in deep/er/game dir")
    );
    assert!(dir.read("deep/er/game dir/Cargo.toml").contains("\"json\""));

    dir.cli(&["new", "pinned", "--gonet-version", "0.1"])
        .stdout();
    let cargo = dir.read("pinned/Cargo.toml");
    assert!(cargo.contains(
        "gonet = { version = \"0.1\", default-features = false, features = [\"tcp\", \"protobuf\", \"signal\"] }\n"
    ));
    assert!(cargo.contains("gonet-build = { version = \"0.1\" }\n"));
    assert!(dir.read("pinned/README.md").contains("version\n0.1."));

    let ws = workspace().display().to_string();
    dir.cli(&["new", "local", "--gonet-path", &ws]).stdout();
    assert!(
        dir.read("local/Cargo.toml")
            .contains(&format!("path = \"{ws}/gonet\""))
    );
}

#[test]
fn bad_arguments_fail_with_a_message_and_status_2() {
    let dir = Dir::new();
    dir.write("taken/file.txt", "something");
    dir.write("plain-file", "something");
    let cases: &[(&[&str], &str)] = &[
        (
            &["new", "taken"],
            "error: taken already exists and is not empty: choose another NAME or --path DIR\n",
        ),
        (
            &["new", "game", "--path", "plain-file"],
            "error: plain-file already exists and is not a directory: choose another NAME or --path DIR\n",
        ),
        (
            &["new", "2game"],
            "error: invalid project name \"2game\": it must start with a lower-case letter (a-z); choose another NAME (for example mygame)\n",
        ),
        (
            &["new", "my.game"],
            "error: invalid project name \"my.game\": '.' is not allowed: only lower-case letters, digits, `_` and `-`; choose another NAME (for example mygame)\n",
        ),
        (
            &["new", "match"],
            "error: invalid project name \"match\": it is a Rust keyword; choose another NAME (for example mygame)\n",
        ),
        (
            &["new", "test"],
            "error: invalid project name \"test\": it is reserved: the name of Rust's test crate; choose another NAME (for example mygame)\n",
        ),
        (
            &["new", "gonet"],
            "error: invalid project name \"gonet\": it is reserved: the name of a crate the project depends on; choose another NAME (for example mygame)\n",
        ),
        (
            &["new", "game", "--gonet-version", "newest"],
            "error: --gonet-version \"newest\" is not a version requirement such as 0.1 or =0.1.2\n",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(&dir.cli(args).fails(2), expected, "{args:?}");
    }
    assert_eq!(dir.read("taken/file.txt"), "something");
    assert!(!dir.path().join("game").exists());

    let err = dir.cli(&["new", "game", "--gonet-path", "."]).fails(2);
    assert!(
        err.starts_with("error: --gonet-path (.) has no gonet/Cargo.toml: give --gonet-path DIR"),
        "{err}"
    );
    let err = dir
        .cli(&["new", "game", "--transport", "carrier-pigeon"])
        .fails(2);
    assert!(
        err.starts_with(
            "error: invalid value 'carrier-pigeon' for '--transport <TRANSPORT>'\n  [possible values: tcp, udp, ws, wss, quic, kcp]\n"
        ),
        "{err}"
    );
    let err = dir.cli(&["new", "game", "--codec", "yaml"]).fails(2);
    assert!(
        err.starts_with(
            "error: invalid value 'yaml' for '--codec <CODEC>'\n  [possible values: protobuf, json, protojson, xml, binary]\n"
        ),
        "{err}"
    );
    let err = dir
        .cli(&["new", "game", "--gonet-path", ".", "--gonet-version", "0.1"])
        .fails(2);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(!dir.path().join("game").exists());
}

#[test]
fn every_command_has_help_with_examples() {
    let dir = Dir::new();
    for args in [
        &["--help"][..],
        &["new", "--help"],
        &["ids", "--help"],
        &["help", "new"],
    ] {
        let help = dir.cli(args).stdout();
        assert!(help.contains("Usage: gonet-cli"), "{help}");
        assert!(help.contains("Examples:\n  gonet-cli "), "{help}");
    }
    let help = dir.cli(&["new", "--help"]).stdout();
    assert!(help.contains("--gonet-path <DIR>"), "{help}");
    assert!(
        help.contains("path dependencies on the\ngonet workspace this gonet-cli was built from"),
        "{help}"
    );
}

/// The one full build: `new` with the defaults, then what its README and its output
/// say to run, and clippy's pedantic lints. The build shares this test's target
/// directory, so compiled dependencies are reused.
#[test]
fn a_new_project_builds_tests_and_runs() {
    let dir = Dir::new();
    dir.cli(&["new", "mygame"]).stdout();
    let project = dir.path().join("mygame");
    // The workspace's lock file pins the versions already compiled here; a user's
    // first build resolves the newest ones instead.
    std::fs::copy(workspace().join("Cargo.lock"), project.join("Cargo.lock")).expect("lock");
    cargo(&project, &["build"]);
    cargo(&project, &["test"]);
    // The templates and the generated code hold to clippy's pedantic lints, so a
    // project's own stricter settings do not start with warnings it did not write.
    // About 20 s of CPU: the dependencies are checked once more, in check mode.
    cargo(
        &project,
        &[
            "clippy",
            "--all-targets",
            "--",
            "-W",
            "clippy::pedantic",
            "-D",
            "warnings",
        ],
    );

    let bin = target_dir().join("debug");
    let mut server = Command::new(bin.join("server"))
        .arg("tcp://127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server output");
    let url = line
        .strip_prefix("mygame server on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected server output {line:?}"))
        .to_owned();
    let client = Command::new(bin.join("client"))
        .args([&url, "ada"])
        .output()
        .expect("client runs");
    // SIGTERM, as docker, systemd and Kubernetes stop a process: the server drains and
    // exits cleanly instead of dying of the signal.
    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success(), "kill -TERM failed: {kill}");
    let exit = server.wait().expect("server exit");
    let mut log = String::new();
    server
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("server log");
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&client.stdout),
        "hello, ada (visitor 1)\npushed: ada is visitor 1\n"
    );
    assert_eq!(
        line,
        format!("mygame server on {url} (protobuf); Ctrl-C or SIGTERM stops it\n")
    );
    assert!(exit.success(), "the server ended with {exit} at SIGTERM");
    // The log, at its default level: the client's session, from connect to close.
    let logged = |what: &str| {
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains(what))
    };
    for what in [
        "tcp listening",
        "connected session=1 peer=127.0.0.1:",
        "closed session=1 reason=",
    ] {
        assert!(logged(what), "no {what:?} in the server's log:\n{log}");
    }
}

/// Runs `cargo ARGS` in `project` with this test's target directory.
fn cargo(project: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
