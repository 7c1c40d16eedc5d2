//! The builder run on schemas written to a temp dir: good ones generate, bad ones fail
//! with every problem named by file and line.

use std::path::Path;

use crate::{BuildError, Builder, ProblemKind};

/// Writes `files` (name, text) under a temp dir and runs the builder on the first
/// `inputs` of them.
fn build(files: &[(&str, &str)], inputs: &[&str]) -> (tempfile::TempDir, Result<(), BuildError>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("proto");
    for (name, text) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
    let inputs: Vec<_> = inputs.iter().map(|i| src.join(i)).collect();
    let result = Builder::new()
        .out_dir(dir.path().join("out"))
        .emit_rerun_if_changed(false)
        .compile(&inputs, &[&src]);
    (dir, result)
}

fn errors(files: &[(&str, &str)], inputs: &[&str]) -> String {
    match build(files, inputs).1 {
        Ok(()) => panic!("the build should fail"),
        Err(err) => err.to_string(),
    }
}

const HEADER: &str = "syntax = \"proto3\";\npackage chat;\nimport \"gonet/options.proto\";\n";

#[test]
fn a_good_schema_generates_one_file_per_package_and_an_include_file() {
    let chat = format!(
        "{HEADER}message Say {{ option (gonet.id) = 101; string content = 1; }}\n\
         message SayAck {{ option (gonet.id) = 102; string content = 1; }}\n\
         service SayService {{ rpc Say(Say) returns (SayAck); }}\n"
    );
    let (dir, result) = build(&[("chat.proto", &chat)], &["chat.proto"]);
    result.expect("builds");
    let out = dir.path().join("out");
    let code = std::fs::read_to_string(out.join("chat.rs")).expect("chat.rs");
    assert!(code.contains("pub trait SayService: Send + Sync + 'static"));
    assert!(code.contains("pub struct SayServiceServer<S>"));
    assert!(code.contains("pub struct SayServiceClient"));
    assert!(code.contains("const ID: u32 = 101;"));
    let include = std::fs::read_to_string(out.join("gonet_protos.rs")).expect("include");
    assert!(include.contains("pub mod chat {"), "{include}");
    assert!(Path::new(&out.join("chat.rs")).exists());
}

#[test]
fn duplicate_ids_across_files_name_both_places() {
    let a = format!("{HEADER}message A {{ option (gonet.id) = 7; }}\n");
    let b = "syntax = \"proto3\";\npackage other;\nimport \"gonet/options.proto\";\n\n\
             message B { option (gonet.id) = 7; }\n";
    let text = errors(&[("a.proto", &a), ("b.proto", b)], &["a.proto", "b.proto"]);
    assert!(
        text.contains(
            "b.proto:5: error: gonet id 7 of other.B is already used by chat.A at a.proto:4"
        ),
        "{text}"
    );
}

#[test]
fn reserved_and_zero_ids_are_refused() {
    let chat = format!(
        "{HEADER}message Zero {{ option (gonet.id) = 0; }}\n\
         message High {{ option (gonet.id) = 4294967041; }}\n"
    );
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(text.contains("gonet-build found 2 problems"), "{text}");
    assert!(
        text.contains("chat.proto:4: error: gonet id 0x0 of chat.Zero is reserved"),
        "{text}"
    );
    assert!(
        text.contains("chat.proto:5: error: gonet id 0xffffff01 of chat.High is reserved"),
        "{text}"
    );
}

#[test]
fn a_service_message_without_an_id_is_named() {
    let chat = format!(
        "{HEADER}message Say {{ option (gonet.id) = 101; }}\nmessage NoId {{}}\n\
         service S {{\n  rpc Say(Say) returns (NoId);\n}}\n"
    );
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(
        text.contains("chat.proto:7: error: rpc chat.S.Say uses chat.NoId as its reply, but chat.NoId has no id"),
        "{text}"
    );
}

#[test]
fn empty_as_a_request_is_refused_with_a_hint() {
    let chat = format!(
        "{HEADER}import \"google/protobuf/empty.proto\";\n\
         service S {{\n  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);\n}}\n"
    );
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(
        text.contains(
            "chat.proto:6: error: rpc chat.S.Ping uses google.protobuf.Empty as its request"
        ),
        "{text}"
    );
    assert!(
        text.contains("declare an empty message with an id"),
        "{text}"
    );
}

#[test]
fn one_request_type_routed_by_two_rpcs_is_refused() {
    let chat = format!(
        "{HEADER}message Say {{ option (gonet.id) = 101; }}\nmessage Ack {{ option (gonet.id) = 102; }}\n\
         service S {{\n  rpc A(Say) returns (Ack);\n  rpc B(Say) returns (Ack);\n}}\n"
    );
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(
        text.contains("chat.proto:8: error: rpcs chat.S.A and chat.S.B both take chat.Say"),
        "{text}"
    );
}

#[test]
fn streaming_rpcs_are_unsupported() {
    let chat = format!(
        "{HEADER}message Say {{ option (gonet.id) = 101; }}\nmessage Ack {{ option (gonet.id) = 102; }}\n\
         service S {{\n  rpc A(stream Say) returns (Ack);\n}}\n"
    );
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(
        text.contains(
            "chat.proto:7: error: rpc chat.S.A streams its request: gonet rpcs are one message in"
        ),
        "{text}"
    );
}

#[test]
fn syntax_errors_show_the_line_and_a_snippet() {
    let chat = format!("{HEADER}message Say {{\n  string content = 1\n}}\n");
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(text.contains("chat.proto:6: error: "), "{text}");
    assert!(text.contains("   5 |   string content = 1"), "{text}");
    assert!(text.contains("   6 | }"), "{text}");
    assert!(text.contains("^"), "{text}");
}

#[test]
fn a_missing_import_names_the_importing_line() {
    let chat = format!("{HEADER}import \"nowhere/missing.proto\";\n");
    let text = errors(&[("chat.proto", &chat)], &["chat.proto"]);
    assert!(
        text.contains("chat.proto:4: error: import 'nowhere/missing.proto' not found"),
        "{text}"
    );
    assert!(text.contains("include paths: "), "{text}");
}

#[test]
fn every_problem_of_every_file_comes_in_one_run() {
    let broken = format!("{HEADER}message Say {{ string content = 1 }}\n");
    let dup = format!(
        "{HEADER}message A {{ option (gonet.id) = 5; }}\nmessage B {{ option (gonet.id) = 5; }}\n"
    );
    let err = build(
        &[("broken.proto", &broken), ("dup.proto", &dup)],
        &["broken.proto", "dup.proto"],
    )
    .1
    .expect_err("fails");
    let kinds: Vec<_> = err.problems().iter().map(|p| &p.kind).collect();
    assert_eq!(kinds.len(), 2, "{err}");
    assert!(matches!(kinds[0], ProblemKind::Proto(_)), "{err}");
    assert!(
        matches!(kinds[1], ProblemKind::DuplicateId { id: 5, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("broken.proto:4"), "{text}");
    assert!(text.contains("dup.proto:5"), "{text}");
}

#[test]
fn compile_panics_with_the_list() {
    let chat = format!("{HEADER}message Zero {{ option (gonet.id) = 0; }}\n");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("chat.proto"), chat).expect("write");
    let input = dir.path().join("chat.proto");
    let panic = std::panic::catch_unwind(|| {
        // OUT_DIR is not set in tests; the schema problem is found first.
        crate::compile(&[&input], &[dir.path()]);
    })
    .expect_err("compile panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("chat.proto:4: error: gonet id 0x0 of chat.Zero is reserved"),
        "{message}"
    );
}

#[test]
fn extra_attributes_reach_the_code_and_bad_ones_are_refused() {
    let chat = format!("{HEADER}message Say {{ option (gonet.id) = 101; string content = 1; }}\n");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("chat.proto"), chat).expect("write");
    let builder = Builder::new()
        .out_dir(dir.path().join("out"))
        .emit_rerun_if_changed(false)
        .codecs([crate::Codec::Protobuf])
        .attribute(
            crate::AttributeTarget::Message,
            ".chat.Say",
            "#[derive(PartialOrd)]",
        );
    builder
        .compile(&[dir.path().join("chat.proto")], &[dir.path()])
        .expect("builds");
    let code = std::fs::read_to_string(dir.path().join("out/chat.rs")).expect("chat.rs");
    assert!(code.contains("#[derive(PartialOrd)]"), "{code}");
    assert!(code.contains("ProstFormat"), "{code}");
    assert!(!code.contains("serde"), "{code}");

    let err = builder
        .attribute(
            crate::AttributeTarget::Field,
            ".chat.Say.content",
            "derive(Eq)",
        )
        .compile(&[dir.path().join("chat.proto")], &[dir.path()])
        .expect_err("refused");
    assert!(
        err.to_string().contains(
            "the Field attribute \"derive(Eq)\" for .chat.Say.content is not a Rust attribute"
        ),
        "{err}"
    );
}

#[test]
fn packages_nest_and_files_without_a_package_sit_at_the_root() {
    let root = "syntax = \"proto3\";\nimport \"gonet/options.proto\";\n\
                message Top { option (gonet.id) = 1; }\n";
    let deep = "syntax = \"proto3\";\npackage game.lobby;\nimport \"gonet/options.proto\";\n\
                import \"root.proto\";\nmessage Seat { option (gonet.id) = 2; Top top = 1; }\n\
                service Lobby { rpc Sit(Seat) returns (.Top); }\n";
    let (dir, result) = build(
        &[("root.proto", root), ("game/lobby.proto", deep)],
        &["game/lobby.proto"],
    );
    result.expect("builds");
    let out = dir.path().join("out");
    let include = std::fs::read_to_string(out.join("gonet_protos.rs")).expect("include");
    let root_file = out.join("_.rs").canonicalize().expect("_.rs");
    assert!(
        include.contains(&format!("include!({:?});", root_file.display().to_string())),
        "{include}"
    );
    assert!(include.contains("pub mod game {"), "{include}");
    assert!(include.contains("    pub mod lobby {"), "{include}");
    let lobby = std::fs::read_to_string(out.join("game.lobby.rs")).expect("lobby");
    assert!(lobby.contains("super::super::Top"), "{lobby}");
}

#[test]
fn inspect_lists_ids_and_reports_the_build_checks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good =
        format!("{HEADER}\nmessage Say {{ option (gonet.id) = 101; }}\nmessage Plain {{}}\n");
    let bad = "syntax = \"proto3\";\npackage other;\nimport \"gonet/options.proto\";\n\n\
               message Again { option (gonet.id) = 101; }\n";
    std::fs::write(dir.path().join("good.proto"), good).expect("write");
    std::fs::write(dir.path().join("bad.proto"), bad).expect("write");

    let schema = crate::inspect(&[dir.path().join("good.proto")], &[dir.path()]).expect("checks");
    let ids: Vec<_> = schema
        .messages
        .iter()
        .map(|m| (m.full_name(), m.id, m.location.to_string()))
        .collect();
    assert_eq!(
        ids,
        [
            ("chat.Say".to_owned(), Some(101), "good.proto:5".to_owned()),
            ("chat.Plain".to_owned(), None, "good.proto:6".to_owned()),
        ]
    );

    let err = crate::inspect(
        &[dir.path().join("good.proto"), dir.path().join("bad.proto")],
        &[dir.path()],
    )
    .expect_err("duplicate id");
    assert_eq!(err.problems().len(), 1);
    assert!(matches!(
        err.problems()[0].kind,
        ProblemKind::DuplicateId { id: 101, .. }
    ));
    assert_eq!(
        err.problems()[0]
            .location
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("bad.proto:5")
    );
}
