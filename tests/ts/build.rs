//! Generates the test service from the schema the TypeScript tests use too.

fn main() {
    gonet_build::compile(
        &["../../clients/ts/test/proto/webtest.proto"],
        &["../../clients/ts/test/proto"],
    );
}
