fn main() {
    gonet_build::compile(
        &[
            "proto/chat.proto",
            "proto/shapes.proto",
            "proto/interop.proto",
        ],
        &["proto"],
    );
}
