//! Generates the examples' messages and services from `schemas/`.

fn main() {
    gonet_build::compile(
        &[
            "../schemas/chat.proto",
            "../schemas/cluster.proto",
            "../schemas/echo.proto",
        ],
        &["../schemas"],
    );
}
