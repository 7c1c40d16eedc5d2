//! `gonet-cli ids` on good and bad schemas.

use crate::util::Dir;

const HEADER: &str = "syntax = \"proto3\";\nimport \"gonet/options.proto\";\n";

/// Two packages, one importing the other from a subdirectory.
fn good_schemas(dir: &Dir) {
    dir.write(
        "schemas/game.proto",
        &format!(
            "{HEADER}package game;\nimport \"common/point.proto\";\n\n\
             message Move {{\n  option (gonet.id) = 1002;\n  common.Point to = 1;\n}}\n\
             message Moved {{\n  option (gonet.id) = 30;\n}}\n\
             message NoId {{}}\n\
             service Play {{ rpc Move(Move) returns (Moved); }}\n"
        ),
    );
    dir.write(
        "schemas/common/point.proto",
        &format!("{HEADER}package common;\n\nmessage Point {{ option (gonet.id) = 1001; }}\n"),
    );
}

const GOOD_TABLE: &str = concat!(
    "  id  message       location\n",
    "  30  game.Moved    schemas/game.proto:10\n",
    "1001  common.Point  schemas/common/point.proto:5\n",
    "1002  game.Move     schemas/game.proto:6\n",
);

#[test]
fn a_directory_is_searched_and_the_table_is_sorted_by_id() {
    let dir = Dir::new();
    good_schemas(&dir);
    assert_eq!(dir.cli(&["ids", "schemas"]).stdout(), GOOD_TABLE);
    // Without arguments: schemas/ of the current directory.
    assert_eq!(dir.cli(&["ids"]).stdout(), GOOD_TABLE);
}

#[test]
fn files_resolve_imports_against_the_include_path() {
    let dir = Dir::new();
    good_schemas(&dir);
    let table = dir
        .cli(&[
            "ids",
            "schemas/game.proto",
            "schemas/common/point.proto",
            "-I",
            "schemas",
        ])
        .stdout();
    assert_eq!(table, GOOD_TABLE);

    // Without -I, a file's own directory is the include path, where the import is not.
    dir.write(
        "other/uses.proto",
        &format!("{HEADER}package other;\nimport \"common/point.proto\";\n"),
    );
    let err = dir.cli(&["ids", "other/uses.proto"]).fails(1);
    assert!(
        err.starts_with("other/uses.proto:4: error: import 'common/point.proto' not found"),
        "{err}"
    );
    assert!(err.contains("(include paths: "), "{err}");
    let table = dir
        .cli(&["ids", "other/uses.proto", "-I", "other", "-I", "schemas"])
        .stdout();
    assert_eq!(
        table,
        "  id  message       location\n1001  common.Point  schemas/common/point.proto:5\n"
    );
}

#[test]
fn duplicate_and_reserved_ids_fail_with_file_and_line() {
    let dir = Dir::new();
    dir.write(
        "proto/a.proto",
        &format!(
            "{HEADER}package chat;\n\nmessage A {{ option (gonet.id) = 7; }}\n\
             message Zero {{ option (gonet.id) = 0; }}\n"
        ),
    );
    dir.write(
        "proto/sub/b.proto",
        &format!(
            "{HEADER}package other;\n\nmessage B {{ option (gonet.id) = 7; }}\n\
             message High {{ option (gonet.id) = 0xFFFFFF00; }}\n"
        ),
    );
    let err = dir.cli(&["ids", "proto"]).fails(1);
    assert_eq!(
        err,
        "proto/a.proto:6: error: gonet id 0x0 of chat.Zero is reserved: message ids are 1..=0xFFFFFEFF (0 and 0xFFFFFF00.. belong to the framework)\n\
         proto/sub/b.proto:5: error: gonet id 7 of other.B is already used by chat.A at proto/a.proto:5\n\
         proto/sub/b.proto:6: error: gonet id 0xffffff00 of other.High is reserved: message ids are 1..=0xFFFFFEFF (0 and 0xFFFFFF00.. belong to the framework)\n\
         error: 3 problems in the schemas\n"
    );
}

#[test]
fn a_service_message_without_an_id_fails_as_the_build_does() {
    let dir = Dir::new();
    dir.write(
        "chat.proto",
        &format!(
            "{HEADER}package chat;\n\nmessage Say {{ option (gonet.id) = 1; }}\nmessage Ack {{}}\n\
             service Chat {{\n  rpc Say(Say) returns (Ack);\n}}\n"
        ),
    );
    let err = dir.cli(&["ids", "chat.proto"]).fails(1);
    assert_eq!(
        err,
        "chat.proto:8: error: rpc chat.Chat.Say uses chat.Ack as its reply, but chat.Ack has no id: add `option (gonet.id) = N;` to it\n\
         error: 1 problem in the schemas\n"
    );
}

#[test]
fn a_syntax_error_names_its_line_and_shows_it() {
    let dir = Dir::new();
    dir.write(
        "schemas/bad.proto",
        &format!("{HEADER}package bad;\n\nmessage Bad {{ string x = ; }}\n"),
    );
    let err = dir.cli(&["ids"]).fails(1);
    assert!(err.starts_with("schemas/bad.proto:5: error: "), "{err}");
    assert!(err.contains("   5 | message Bad { string x = ; }"), "{err}");
    assert!(err.ends_with("error: 1 problem in the schemas\n"), "{err}");
}

#[test]
fn paths_without_schemas_are_usage_errors() {
    let dir = Dir::new();
    dir.write("notes/readme.txt", "no schemas here");
    assert_eq!(
        dir.cli(&["ids", "missing.proto"]).fails(2),
        "error: missing.proto is neither a .proto file nor a directory\n"
    );
    // Without arguments and without schemas/: the current directory.
    assert_eq!(
        dir.cli(&["ids"]).fails(2),
        "error: no .proto files in .: give the files or the directories that hold them\n"
    );
    assert_eq!(
        dir.cli(&["ids", "notes"]).fails(2),
        "error: no .proto files in notes: give the files or the directories that hold them\n"
    );
    assert_eq!(
        dir.cli(&["ids", "notes", "-I", "nowhere"]).fails(2),
        "error: no .proto files in notes: give the files or the directories that hold them\n"
    );
}
