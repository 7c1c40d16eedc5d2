//! `gonet-cli gen ts` and `gonet-cli ids --format json`.

use crate::util::{Dir, workspace};

const HEADER: &str = "syntax = \"proto3\";\nimport \"gonet/options.proto\";\n";

/// The TypeScript client's test schema gives exactly the committed
/// `clients/ts/test/gen/webtest.ts`, which the client's tests compile and run in Node
/// and Chromium. After a change to the generator, regenerate it with
/// `gonet-cli gen ts clients/ts/test/proto --out clients/ts/test/gen`.
#[test]
fn the_test_schema_gives_the_committed_typescript() {
    let dir = Dir::new();
    let root = workspace();
    let proto = root.join("clients/ts/test/proto");
    let out = dir.path().join("gen");
    let printed = dir
        .cli(&[
            "gen",
            "ts",
            proto.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout();
    assert_eq!(
        printed,
        format!("wrote {}\n", out.join("webtest.ts").display())
    );
    let generated = dir.read("gen/webtest.ts");
    let committed = std::fs::read_to_string(root.join("clients/ts/test/gen/webtest.ts")).unwrap();
    assert!(
        generated == committed,
        "clients/ts/test/gen/webtest.ts differs from what gonet-cli generates now; regenerate it \
         with `gonet-cli gen ts clients/ts/test/proto --out clients/ts/test/gen`"
    );
}

/// The chat example's schema gives exactly the committed
/// `examples/chat/web/gen/chat.ts`, which the chat's web client uses. Regenerate it with
/// `gonet-cli gen ts schemas/chat.proto -I schemas --out examples/chat/web/gen`.
#[test]
fn the_chat_schema_gives_the_committed_typescript() {
    let dir = Dir::new();
    let root = workspace();
    let schemas = root.join("schemas");
    dir.cli(&[
        "gen",
        "ts",
        schemas.join("chat.proto").to_str().unwrap(),
        "-I",
        schemas.to_str().unwrap(),
        "--out",
        "gen",
    ])
    .stdout();
    let generated = dir.read("gen/chat.ts");
    let committed = std::fs::read_to_string(root.join("examples/chat/web/gen/chat.ts")).unwrap();
    assert!(
        generated == committed,
        "examples/chat/web/gen/chat.ts differs from what gonet-cli generates now; regenerate it \
         with `gonet-cli gen ts schemas/chat.proto -I schemas --out examples/chat/web/gen`"
    );
}

/// One file per .proto file, at the same relative path; a type of another file is
/// imported from it, and --client names the client's module.
#[test]
fn files_import_each_other_and_the_client() {
    let dir = Dir::new();
    dir.write(
        "schemas/game/play.proto",
        &format!(
            "{HEADER}package game;\nimport \"common/point.proto\";\n\n\
             // Move somewhere.\n\
             message Move {{\n  option (gonet.id) = 1002;\n  common.Point to = 1;\n  repeated common.Point path = 2;\n  int64 at_tick = 3;\n}}\n\
             service Play {{ rpc Move(Move) returns (common.Point); }}\n"
        ),
    );
    dir.write(
        "schemas/common/point.proto",
        &format!("{HEADER}package common;\n\nmessage Point {{ option (gonet.id) = 1001; sint32 x = 1; }}\n"),
    );
    dir.cli(&[
        "gen",
        "ts",
        "schemas",
        "--out",
        "web",
        "--client",
        "../lib/client.js",
    ])
    .stdout();
    let play = dir.read("web/game/play.ts");
    for want in [
        "import { type CallOptions, type Client, type MessageType, messageType } from \"../lib/client.js\";\n",
        "import { Point } from \"../common/point.js\";\n",
        "/**\n * Move somewhere.\n *\n * `game.Move`, message id 1002.\n */\nexport interface Move {\n  to?: Point;\n  path: Point[];\n  atTick: string;\n}\n",
        "  if (m.to != null) Point.fill!(m.to);\n",
        "  for (const v of m.path) Point.fill!(v);\n",
        "  m.atTick ??= \"0\";\n",
        "  move(req: Move, options?: CallOptions): Promise<Point> {\n    return this.client.call(Move, req, Point, options);\n  }\n",
        "export const ids = {\n  \"game.Move\": 1002,\n} as const;\n",
    ] {
        assert!(play.contains(want), "{want}\nnot in:\n{play}");
    }
    let point = dir.read("web/common/point.ts");
    assert!(
        point.contains("export interface Point {\n  x: number;\n}\n"),
        "{point}"
    );
}

/// The build's checks run first: a bad schema writes nothing.
#[test]
fn a_bad_schema_is_reported_and_nothing_is_written() {
    let dir = Dir::new();
    dir.write(
        "schemas/a.proto",
        &format!(
            "{HEADER}package a;\nmessage A {{ option (gonet.id) = 7; }}\nmessage B {{ option (gonet.id) = 7; }}\n"
        ),
    );
    let err = dir.cli(&["gen", "ts", "schemas", "--out", "web"]).fails(1);
    assert!(
        err.contains(
            "schemas/a.proto:5: error: gonet id 7 of a.B is already used by a.A at schemas/a.proto:4"
        ),
        "{err}"
    );
    assert!(!dir.path().join("web").exists());
}

#[test]
fn ids_as_json_is_an_array_sorted_by_id() {
    let dir = Dir::new();
    dir.write(
        "schemas/game.proto",
        &format!(
            "{HEADER}package game;\n\nmessage Move {{ option (gonet.id) = 1002; }}\nmessage Moved {{ option (gonet.id) = 30; }}\n"
        ),
    );
    let json = dir.cli(&["ids", "--format", "json"]).stdout();
    assert_eq!(
        json,
        "[\n  {\n    \"id\": 30,\n    \"location\": \"schemas/game.proto:6\",\n    \"name\": \"game.Moved\"\n  },\n  {\n    \"id\": 1002,\n    \"location\": \"schemas/game.proto:5\",\n    \"name\": \"game.Move\"\n  }\n]\n"
    );
}
